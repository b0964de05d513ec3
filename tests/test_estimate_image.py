"""The image path of the start-pose estimator: person boxes, crop geometry, the HMR 2.0 pipeline on a tiny
network, the refinement toward keypoints (acceptance measurement with golden numbers) and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from tiny_files import write_tiny_camerahmr

from comovi_core.body.camera import PinholeCamera
from comovi_core.body.mannequin import demo_motion
from comovi_core.body.rotations import axis_angle_to_matrix, matrix_to_axis_angle
from comovi_core.body.smpl import load_body_model
from comovi_core.errors import CoMoViError
from comovi_core.evaluation.start_pose import keypoints_of, refinement_trial
from comovi_core.recovery.estimate import estimate_from_image
from comovi_core.recovery.hmr.config import PRESETS
from comovi_core.recovery.hmr.crop import (
    box_from_mask,
    box_from_points,
    crop_camera_to_full,
    crop_person,
    square_window,
)
from comovi_core.recovery.hmr.detect import PersonDetector, select_person
from comovi_core.recovery.hmr.model import HMR2

H, W = 704, 1280


@pytest.fixture(scope="module")
def body():
    return load_body_model(None)


def _truth(frame: int = 3, yaw: float = 0.6, seed: int = 0):
    truth = demo_motion(num_frames=8, height=H, width=W)
    turned = axis_angle_to_matrix(
        torch.as_tensor(truth.global_orient[frame], dtype=torch.float64)
    ) @ axis_angle_to_matrix(torch.tensor([0.0, yaw, 0.0], dtype=torch.float64))
    betas = 0.8 * torch.randn(10, generator=torch.Generator().manual_seed(seed))
    return (
        matrix_to_axis_angle(turned).float(),
        torch.as_tensor(truth.body_pose[frame]),
        betas,
        torch.as_tensor(truth.transl[frame]),
    ), truth.camera


def test_refinement_improves_an_hmr_like_start_on_both_measures(body):
    """Acceptance: the truth perturbed like an HMR error (15 deg at every joint, 0.1 on betas, 20 % depth), refined
    toward keypoints projected from the truth. Golden values measured when written (three-quarter view of the
    stand-in, seed 0): start 173 mm / IoU 0.41, refined 32 mm / IoU 0.80, keypoint-only fit 57 mm / IoU 0.92."""
    params, camera = _truth()
    r = refinement_trial(body, *params, camera, seed=0)
    golden = {"start": (173.2, 0.413), "refined": (32.0, 0.799), "keypoint_fit": (56.7, 0.916)}
    for name, (mpjpe, iou) in golden.items():
        assert r[name]["mpjpe_mm"] == pytest.approx(mpjpe, abs=8.0), name
        assert r[name]["iou"] == pytest.approx(iou, abs=0.04), name
    assert r["refined"]["mpjpe_mm"] < 0.3 * r["start"]["mpjpe_mm"]
    assert r["refined"]["iou"] > r["start"]["iou"] + 0.3
    assert r["refined"]["transl_error_m"] < 0.05 < r["start"]["transl_error_m"]  # the 20 % depth error is gone
    assert r["refined"]["mpjpe_mm"] < r["keypoint_fit"]["mpjpe_mm"]  # a network start beats the rest-pose start


def test_person_boxes_and_the_square_crop_window():
    keypoints = np.zeros((18, 3), np.float32)
    keypoints[[1, 10, 13]] = [[600, 100, 1], [560, 500, 1], [640, 500, 0.9]]
    box = box_from_points(keypoints, H, W)
    np.testing.assert_allclose(box, [552, 60, 648, 540], atol=1e-3)  # grown 1.2x about the points' centre
    cx, cy, side = square_window(box)
    assert (cx, cy, side) == pytest.approx((600, 300, 480))  # tall box: its height is the side
    # wide box: the height grows to the 192:256 aspect (400 * 256 / 192), the longer side
    assert square_window(np.array([0, 0, 400, 100], np.float32))[2] == pytest.approx(533.333, abs=1e-3)
    mask = np.zeros((H, W), np.float32)
    mask[50:300, 100:180] = 1
    np.testing.assert_allclose(box_from_mask(mask), [100, 50, 180, 300])
    with pytest.raises(CoMoViError, match="MASK is empty"):
        box_from_mask(np.zeros((H, W)))
    with pytest.raises(CoMoViError, match="fewer than 2 confident keypoints"):
        box_from_points(np.zeros((18, 3), np.float32), H, W)


def test_crop_samples_the_window_and_the_camera_goes_back_to_the_full_image():
    config = PRESETS["tiny"]
    image = torch.zeros(H, W, 3)
    image[200:264, 300:364] = 1.0  # a white 64 px square
    crop = crop_person(image, (332.0, 232.0, 128.0), config)  # a 128 px window around it, to 64 px
    white = (1 - torch.tensor(config.image_mean)) / torch.tensor(config.image_std)
    torch.testing.assert_close(crop[:, 20:44, 20:44].mean((1, 2)), white, atol=1e-4, rtol=0)
    black = -torch.tensor(config.image_mean) / torch.tensor(config.image_std)
    torch.testing.assert_close(crop[:, :8, :8].mean((1, 2)), black, atol=1e-4, rtol=0)
    # crop camera (s, tx, ty) -> translation whose root projects to the window centre + offset, at focal f
    camera = PinholeCamera.default_for(H, W)
    t = crop_camera_to_full(
        torch.tensor([0.8, 0.1, -0.05]), (900.0, 300.0, 400.0), camera.principal_point, camera.focal_length[0]
    )
    uv = camera.project(t)
    scale = 400 * 0.8 / 2  # pixels per metre in the crop's weak perspective
    torch.testing.assert_close(uv, torch.tensor([900 + 0.1 * scale, 300 - 0.05 * scale]), atol=1e-3, rtol=0)
    assert float(t[2]) == pytest.approx(2 * camera.focal_length[0] / 320)


def test_select_person_largest_or_most_confident():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 50, 80], [5, 5, 30, 30], [0, 0, 100, 100]], np.float32)
    scores = np.array([0.9, 0.6, 0.95, 0.99])
    labels = np.array([0, 0, 0, 2])  # the biggest, surest box is not a person
    np.testing.assert_array_equal(select_person(boxes, scores, labels, 0), boxes[1])
    np.testing.assert_array_equal(select_person(boxes, scores, labels, 0, rule="confident"), boxes[2])
    with pytest.raises(CoMoViError, match=r"no person detected .*\(best person score 0.95 < 0.97\)"):
        select_person(boxes, scores, labels, 0, min_score=0.97)


def test_detector_wrapper_on_a_tiny_random_rt_detr():
    """Boxes come back in image pixels: the wrapper's box equals the one computed by hand from the raw output."""
    from transformers import RTDetrConfig, RTDetrForObjectDetection, RTDetrResNetConfig

    torch.manual_seed(0)
    backbone = RTDetrResNetConfig(
        embedding_size=8, hidden_sizes=[8, 16, 16, 16], depths=[1, 1, 1, 1], out_features=["stage2", "stage3", "stage4"]
    )
    config = RTDetrConfig(
        backbone_config=backbone,
        encoder_hidden_dim=16,
        d_model=16,
        encoder_in_channels=[16] * 3,
        decoder_in_channels=[16] * 3,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        decoder_layers=1,
        num_queries=10,
        num_labels=2,
        decoder_n_points=2,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        num_denoising=0,
        id2label={0: "person", 1: "dog"},
    )
    detector = PersonDetector(RTDetrForObjectDetection(config), size=64)
    image = torch.rand(48, 80, 3)
    box = detector(image, min_score=0.0, rule="confident")
    with torch.no_grad():
        pixels = torch.nn.functional.interpolate(
            image.permute(2, 0, 1)[None], size=(64, 64), mode="bilinear", align_corners=False, antialias=True
        )
        out = detector.model(pixel_values=pixels)
    scores, labels = out.logits[0].sigmoid().max(-1)
    best = int(torch.where(labels == 0, scores, torch.zeros_like(scores)).argmax())
    cx, cy, w, h = (out.pred_boxes[0, best] * torch.tensor([80, 48, 80, 48])).tolist()
    np.testing.assert_allclose(box, [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], rtol=1e-5)
    # every person for a video's tracker: the same boxes, the dog's queries left out, the score threshold applied
    boxes, found = detector.detect(image, min_score=0.0)
    assert len(boxes) == int((labels == 0).sum()) and found.shape == (len(boxes),)
    np.testing.assert_allclose(boxes[int(np.argmax(found))], box, rtol=1e-6)
    threshold = float(np.median(found))
    assert len(detector.detect(image, min_score=threshold)[0]) == int((found >= threshold).sum())


def test_image_path_with_a_tiny_hmr2_and_refinement(body):
    """Tiny random HMR2 (the pipeline, not the accuracy): the body ends in front of the camera, with the network's
    betas as the start, and the refinement brings its joints toward the keypoints (measured when written: a random
    network's start 278 px off, refined 16 px; the pulls toward that start keep it from going all the way)."""
    params, camera = _truth()
    keypoints = keypoints_of(body, *params, camera)
    torch.manual_seed(0)
    model = HMR2(PRESETS["tiny"]).eval()
    image = torch.rand(H, W, 3)
    motion, info = estimate_from_image(body, image, model, keypoints=keypoints)
    assert motion.num_frames == 1 and motion.camera == camera and motion.transl[0, 2] > 0
    assert info["estimator"] == "HMR 2.0 + keypoint refinement" and info["focal"] == "field of view 50 degrees"
    _, unrefined_info = estimate_from_image(body, image, model, keypoints=keypoints, iterations=0)
    assert info["reprojection_px"] < 0.25 * unrefined_info["reprojection_px"]
    mask = np.zeros((H, W), np.float32)
    mask[100:600, 500:700] = 1
    unrefined, info = estimate_from_image(body, image, model, mask=mask)
    assert info["box"] == [500.0, 100.0, 700.0, 600.0] and "reprojection_px" not in info
    with torch.no_grad():
        out = model(crop_person(image, square_window(np.array(info["box"])), model.config)[None])
    np.testing.assert_allclose(unrefined.betas, out.betas[0].numpy(), atol=1e-6)
    with pytest.raises(CoMoViError, match="no person box"):
        estimate_from_image(body, image, model)
    with pytest.raises(CoMoViError, match="no estimator weights and no keypoints"):
        estimate_from_image(body, image)
    fallback, info = estimate_from_image(body, image, None, keypoints=keypoints)
    assert info["estimator"] == "keypoint fit" and info["reprojection_px"] < 3.0


def test_cli_from_the_start_image(body, tmp_path):
    """`python -m comovi_core.estimate IMAGE --keypoints JSON [--estimator FILE] --out start.npz`: with a (tiny,
    converted) estimator the refined body; without one the keypoint fit; a missing estimator file is exit 2."""
    from PIL import Image

    from comovi_core.body.motion_file import load_motion
    from comovi_core.recovery.estimate import main, reprojection_error_px
    from comovi_core.recovery.hmr.loading import save_hmr2

    params, camera = _truth()
    keypoints = keypoints_of(body, *params, camera)
    frame = {"people": [{"pose_keypoints_2d": keypoints.reshape(-1).tolist()}], "canvas_height": H, "canvas_width": W}
    (tmp_path / "pose.json").write_text(json.dumps([frame]))
    Image.fromarray(np.full((H, W, 3), 128, np.uint8)).save(tmp_path / "start.png")
    torch.manual_seed(0)
    save_hmr2(HMR2(PRESETS["tiny"]).eval(), tmp_path / "hmr2_tiny.safetensors")
    common = [str(tmp_path / "start.png"), "--keypoints", str(tmp_path / "pose.json")]
    estimator = ["--estimator", str(tmp_path / "hmr2_tiny.safetensors")]
    assert main(common + estimator + ["--out", str(tmp_path / "a.npz")]) == 0
    refined = load_motion(tmp_path / "a.npz")
    assert refined.num_frames == 1 and refined.camera == camera and np.abs(refined.betas).sum() > 0
    assert main(common + ["--out", str(tmp_path / "b.npz")]) == 0
    fitted = load_motion(tmp_path / "b.npz")
    assert reprojection_error_px(body, fitted, keypoints) < 3.0 and not fitted.betas.any()
    assert main(common + ["--estimator", str(tmp_path / "missing.ckpt"), "--out", str(tmp_path / "c.npz")]) == 2
    assert not (tmp_path / "c.npz").exists()


def test_the_estimator_file_is_read_once_until_it_changes(body, tmp_path, monkeypatch):
    """estimate_start (the EstimateSMPL node's path) keeps the loaded estimator while its file is unchanged: a graph
    run again with another picture does not read the checkpoint again; a rewritten file is read anew."""
    import os

    from comovi_core.recovery.estimate import _load_estimator, estimate_start
    from comovi_core.recovery.hmr import loading as checkpoint

    mask = torch.zeros(1, H, W)  # a person box from a mask: no keypoint refinement, the cache is what is tested
    mask[0, 100:600, 500:700] = 1
    path = tmp_path / "hmr2_tiny.safetensors"
    torch.manual_seed(0)
    checkpoint.save_hmr2(HMR2(PRESETS["tiny"]).eval(), path)
    reads = []
    real = checkpoint.load_hmr2
    monkeypatch.setattr(checkpoint, "load_hmr2", lambda p, *a, **k: reads.append(p) or real(p, *a, **k))
    _load_estimator.cache_clear()
    images = [torch.full((1, H, W, 3), v) for v in (0.3, 0.7)]
    first, again = (estimate_start(body, im, None, mask=mask, estimator_path=path)[0] for im in images)
    assert len(reads) == 1  # two pictures, one read
    torch.manual_seed(1)
    checkpoint.save_hmr2(HMR2(PRESETS["tiny"]).eval(), path)  # other weights, same size
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    changed, _ = estimate_start(body, images[1], None, mask=mask, estimator_path=path)
    assert len(reads) == 2 and not np.allclose(changed.betas, again.betas)
    _load_estimator.cache_clear()


def test_camerahmr_through_estimate_start_places_the_body_at_its_focal_length(body, tmp_path, caplog):
    """estimate_start with tiny random-weight CameraHMR + FLNet files side by side (the EstimateSMPL node's path):
    the start pose's camera has FLNet's focal length (not the 50-degree default), the log says so; with the focal
    network switched off the field of view sets it. The body is in front of the camera in both."""
    import logging

    from comovi_core.body.camera import PinholeCamera
    from comovi_core.recovery.estimate import _load_estimator, estimate_start
    from comovi_core.recovery.hmr.fl_net import estimate_camera
    from comovi_core.recovery.hmr.loading import load_estimator

    camerahmr, _ = write_tiny_camerahmr(tmp_path / "smpl_estimators")
    image = torch.rand(1, H, W, 3, generator=torch.Generator().manual_seed(0))
    mask = torch.zeros(1, H, W)
    mask[0, 100:600, 500:700] = 1
    expected, vfov = estimate_camera(load_estimator(camerahmr).focal_net, image[0])
    default = PinholeCamera.default_for(H, W, 50.0)
    assert abs(expected.focal_length[1] / default.focal_length[1] - 1) > 0.1
    _load_estimator.cache_clear()
    with caplog.at_level(logging.INFO, logger="comovi_core.recovery.estimate"):
        motion, preview = estimate_start(body, image, None, mask=mask, estimator_path=camerahmr)
    assert preview.shape == (1, H, W, 3) and motion.num_frames == 1
    assert motion.global_orient.shape == (1, 3) and motion.body_pose.shape == (1, 69) and motion.betas.shape == (10,)
    assert motion.camera == expected and motion.transl[0, 2] > 0
    assert f"CameraHMR; focal length: estimated by CameraHMR (vertical field of view {vfov:.1f} degrees)" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="comovi_core.recovery.estimate"):
        fov_motion, _ = estimate_start(body, image, None, mask=mask, estimator_path=camerahmr, focal_net=None)
    assert fov_motion.camera == default and fov_motion.transl[0, 2] > 0
    assert "CameraHMR; focal length: field of view 50 degrees" in caplog.text
    _load_estimator.cache_clear()


def test_an_implausible_field_of_view_falls_back_to_the_given_one(body, tmp_path, monkeypatch, caplog):
    """A focal network that answers 0.1 degrees (a broken file) is not used: the start pose keeps the given field of
    view, and a warning names the value and the range."""
    import logging
    import math

    from comovi_core.body.camera import PinholeCamera
    from comovi_core.recovery.estimate import _load_estimator, estimate_start
    from comovi_core.recovery.hmr.fl_net import FLNet, estimate_camera
    from comovi_core.recovery.hmr.loading import load_estimator

    camerahmr, _ = write_tiny_camerahmr(tmp_path / "smpl_estimators")
    image = torch.rand(1, H, W, 3, generator=torch.Generator().manual_seed(0))
    mask = torch.zeros(1, H, W)
    mask[0, 100:600, 500:700] = 1
    monkeypatch.setattr(FLNet, "forward", lambda self, x: torch.tensor([[0.0, math.radians(0.1)]]).to(x))
    _load_estimator.cache_clear()
    camera, degrees = estimate_camera(load_estimator(camerahmr).focal_net, image[0])
    assert camera is None and degrees == pytest.approx(0.1)
    with caplog.at_level(logging.INFO):
        motion, _ = estimate_start(body, image, None, mask=mask, estimator_path=camerahmr, fov_degrees=40.0)
    assert motion.camera == PinholeCamera.default_for(H, W, 40.0) and motion.transl[0, 2] > 0
    assert "vertical field of view of 0.1 degrees, outside 5-150" in caplog.text
    _load_estimator.cache_clear()


def test_cli_with_camerahmr_writes_the_estimated_camera(body, tmp_path):
    """`python -m comovi_core.estimate IMAGE --keypoints JSON --estimator CAMERAHMR [--focal-net none]`: the motion's
    camera is FLNet's (found next to the estimator), or the --fov one with --focal-net none."""
    from PIL import Image

    from comovi_core.body.motion_file import load_motion
    from comovi_core.recovery.estimate import main
    from comovi_core.recovery.hmr.fl_net import estimate_camera
    from comovi_core.recovery.hmr.loading import load_estimator

    camerahmr, _ = write_tiny_camerahmr(tmp_path / "smpl_estimators")
    params, camera = _truth()
    keypoints = keypoints_of(body, *params, camera)
    frame = {"people": [{"pose_keypoints_2d": keypoints.reshape(-1).tolist()}], "canvas_height": H, "canvas_width": W}
    (tmp_path / "pose.json").write_text(json.dumps([frame]))
    Image.fromarray(np.full((H, W, 3), 128, np.uint8)).save(tmp_path / "start.png")
    common = [str(tmp_path / "start.png"), "--keypoints", str(tmp_path / "pose.json"), "--estimator", str(camerahmr)]
    assert main(common + ["--out", str(tmp_path / "a.npz")]) == 0
    expected, _ = estimate_camera(load_estimator(camerahmr).focal_net, torch.full((H, W, 3), 128 / 255))
    assert load_motion(tmp_path / "a.npz").camera == expected
    assert main(common + ["--focal-net", "none", "--fov", "40", "--out", str(tmp_path / "b.npz")]) == 0
    assert load_motion(tmp_path / "b.npz").camera == PinholeCamera.default_for(H, W, 40.0)
