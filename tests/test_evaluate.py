"""Evaluation metrics (motion errors, 3D-2D consistency) and ``python -m comovi_core.evaluate``."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from comovi_core.body.mannequin import demo_motion
from comovi_core.body.motion_file import SMPLMotion, load_motion, save_motion
from comovi_core.body.smpl import camera_vertices, load_body_model
from comovi_core.errors import CoMoViError
from comovi_core.evaluation.metrics import map_consistency, motion_errors
from comovi_core.evaluation.run import consistency, main
from comovi_core.motion_map.decode import decode_motion_map
from comovi_core.motion_map.render import render_motion_map


@pytest.fixture(scope="module")
def body():
    return load_body_model(None)


def _joints(body, motion):
    with torch.no_grad():
        return camera_vertices(body, motion)


def test_identical_motions_have_zero_error(body):
    out = _joints(body, demo_motion(num_frames=6, height=64, width=64))
    errors = motion_errors(out.joints, out.joints, out.vertices, out.vertices)
    assert set(errors) == {"mpjpe_mm", "pa_mpjpe_mm", "pve_mm", "accel_error_mm"}
    assert all(abs(v) < 1e-3 for v in errors.values())


def test_rotation_about_the_root_is_removed_by_procrustes_only(body):
    """Root-relative joints turned 90 degrees about the vertical axis: each joint moves 2 sin(45) times its
    distance from that axis (computed here with numpy), and PA-MPJPE gives it back as zero."""
    joints = _joints(body, demo_motion(num_frames=3, height=64, width=64)).joints
    rel = joints - joints[:, :1]
    turn = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])
    pred = rel @ turn.T + torch.tensor([0.3, -0.2, 1.0])
    radius = np.linalg.norm(rel.numpy()[..., [0, 2]], axis=-1)
    expected = 1000 * np.mean(2 * math.sin(math.pi / 4) * radius)
    errors = motion_errors(pred, joints)
    assert errors["mpjpe_mm"] == pytest.approx(expected, rel=1e-4) and expected > 50
    assert errors["pa_mpjpe_mm"] < 1e-3
    scaled = motion_errors(joints * 1.1, joints)  # a similarity: Procrustes removes the scale too
    assert scaled["pa_mpjpe_mm"] < 1e-3 and scaled["mpjpe_mm"] > 10


def test_acceleration_error_of_a_one_frame_jump():
    """All joints jump d = 20 mm on one frame: the second differences are (d, -2d, d) there, so the mean
    over the T-2 second differences is 4d / (T-2)."""
    gt = torch.zeros(10, 24, 3)
    pred = gt.clone()
    pred[5, :, 0] += 0.02
    errors = motion_errors(pred, gt)
    assert errors["accel_error_mm"] == pytest.approx(4 * 20 / 8, rel=1e-5)
    assert errors["mpjpe_mm"] == pytest.approx(0.0, abs=1e-6)  # the jump is common to all joints: root-relative 0
    with pytest.raises(CoMoViError, match="differ in shape"):
        motion_errors(pred[:4], gt)


def test_consistency_of_a_motion_with_its_own_motion_map(body):
    motion = demo_motion(num_frames=3, height=160, width=128)
    with torch.no_grad():
        vertices = camera_vertices(body, motion).vertices
    shaded = render_motion_map(vertices, body.faces, body.part_ids, motion.camera, "comovi_v1", "torch").images
    same = consistency(body, motion, shaded, "torch")
    assert same["frames"] == 3 and same["silhouette_iou"] == 1.0
    assert (
        same["part_agreement"] > 0.92 and same["normal_error_deg"] < 3
    )  # measured 0.944 and 1.4 deg: the decoder's own rates
    cheap = consistency(body, motion, shaded, "torch", max_frames=2, stride=2)  # the pipeline's quick estimate
    assert cheap["silhouette_iou"] == 1.0 and abs(cheap["part_agreement"] - same["part_agreement"]) < 0.02
    # shifted 8 px to the right: IoU falls to what the masks themselves say
    moved = torch.ones_like(shaded)
    moved[:, :, 8:] = shaded[:, :, :-8]
    exact = decode_motion_map(
        render_motion_map(vertices, body.faces, body.part_ids, motion.camera, "flat", "torch").images, "flat"
    )
    inter = (exact.mask[:, :, 8:] & exact.mask[:, :, :-8]).flatten(1).sum(1).float()
    union = exact.mask.flatten(1).sum(1).float() * 2 - inter
    shifted = consistency(body, motion, moved, "torch")
    expected = float((inter / union).mean())
    assert shifted["silhouette_iou"] == pytest.approx(expected, abs=2e-3) and expected < 0.9
    empty = map_consistency(exact, decode_motion_map(torch.ones_like(shaded), "flat"))
    assert empty["silhouette_iou"] == 0.0 and empty["part_agreement"] == 0.0
    with pytest.raises(CoMoViError, match="camera"):
        consistency(body, motion, shaded[:, :64], "torch")


def test_cli_on_a_generate_output(tmp_path, caplog):
    from comovi_core.inference.generate import main as generate

    run = tmp_path / "run"
    assert generate(["--preset", "tiny", "--frames", "5", "--steps", "2", "--out", str(run)]) == 0
    assert main([str(run), "--gt", str(run / "motion.npz"), "--backend", "torch"]) == 0
    report = json.loads((run / "eval.json").read_text())
    assert report["vs_reference"]["mpjpe_mm"] == pytest.approx(0.0, abs=1e-3) and report["vs_reference"]["frames"] == 5
    assert 0.0 <= report["consistency"]["silhouette_iou"] <= 1.0 and report["consistency"]["frames"] == 5
    # a reference that differs by a known global turn: the error is measured, Procrustes removes it
    motion = load_motion(run / "motion.npz")
    turned = SMPLMotion(
        motion.global_orient + np.array([0.0, 0.5, 0.0], np.float32),
        motion.body_pose,
        motion.betas,
        motion.transl,
        motion.fps,
        motion.camera,
    )
    save_motion(tmp_path / "turned.npz", turned)
    assert (
        main([str(run), "--gt", str(tmp_path / "turned.npz"), "--out", str(tmp_path / "e.json"), "--backend", "torch"])
        == 0
    )
    vs = json.loads((tmp_path / "e.json").read_text())["vs_reference"]
    assert vs["mpjpe_mm"] > 20 and vs["pa_mpjpe_mm"] < 1.0
    (run / "motion.npz").unlink()
    assert main([str(run)]) == 2 and "no motion.npz" in caplog.text
