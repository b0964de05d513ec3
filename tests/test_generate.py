"""End to end: ``python -m comovi_core.generate --preset tiny`` and the pipeline's input checks."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from comovi_core.body.mannequin import demo_motion
from comovi_core.body.motion_file import load_motion, save_motion
from comovi_core.body.smpl import camera_vertices, load_body_model
from comovi_core.errors import CoMoViError
from comovi_core.files.images import MAX_IMAGE_PIXELS, load_image
from comovi_core.files.video import read_video
from comovi_core.inference.generate import main
from comovi_core.inference.inputs import pad_to_aspect
from comovi_core.inference.pipeline import CoMoViPipeline
from comovi_core.inference.tiny import tiny_components


def test_tiny_preset_writes_every_output_quickly(tmp_path):
    start = time.perf_counter()
    assert main(["--preset", "tiny", "--out", str(tmp_path / "run")]) == 0
    elapsed = time.perf_counter() - start
    out = tmp_path / "run"
    assert sorted(p.name for p in out.iterdir()) == ["meta.json", "motion.npz", "motion_map.mp4", "rgb.mp4"]
    assert (out.stat().st_mode & 0o777) == 0o755 and [p.name for p in tmp_path.iterdir()] == ["run"]  # published whole
    assert read_video(out / "rgb.mp4").shape == (9, 128, 128, 3) and read_video(out / "motion_map.mp4").shape == (
        9,
        128,
        128,
        3,
    )
    motion = load_motion(out / "motion.npz")
    start_pose = demo_motion(num_frames=1, height=128, width=128)
    assert motion.num_frames == 9 and motion.camera.image_size == (128, 128)
    np.testing.assert_allclose(motion.body_pose[0], start_pose.body_pose[0], atol=1e-5)  # frame 0 is the start pose
    assert np.abs(motion.body_pose[1:] - motion.body_pose[:1]).max() > 1e-3  # the head moved the others
    meta = json.loads((out / "meta.json").read_text())
    assert meta["seed"] == 0 and meta["has_3d_head"] and meta["body_model"].startswith("stand-in")
    assert set(meta["timings_s"]) == {"load", "text", "encode", "denoise", "decode", "quality"}
    assert set(meta["motion_quality"]) == {"frames", "silhouette_iou", "part_agreement", "normal_error_deg"}
    assert elapsed < 60


def _pipe():
    return CoMoViPipeline(body_model=load_body_model(None), **tiny_components(0))


def _call(pipe, **kw):
    args = dict(
        image=torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0)),
        prompt="a person jumps",
        start=demo_motion(num_frames=1, height=64, width=64),
        num_frames=5,
        steps=2,
        seed=3,
    )
    args.update(kw)
    return pipe(**args)


def test_same_seed_same_output_and_motion_without_a_head(quick_fit):
    pipe = _pipe()
    a, b, c = _call(pipe), _call(pipe), _call(pipe, seed=4)
    assert torch.equal(a.rgb, b.rgb) and torch.equal(a.motion_map, b.motion_map)
    np.testing.assert_array_equal(a.motion.body_pose, b.motion.body_pose)
    assert not torch.equal(a.rgb, c.rgb) and a.motion_source == "3d_head"
    pipe.transformer.smpl_head = None
    unfitted = _call(pipe, fit_motion=False)
    assert unfitted.motion is None and unfitted.motion_source == "none"
    steps = []
    fitted = _call(pipe, fit_callback=lambda i, n: steps.append((i, n)))
    start = demo_motion(num_frames=1, height=64, width=64)
    assert (
        fitted.motion_source == "fitted_to_motion_map" and fitted.motion.num_frames == 5 and len(steps) == steps[0][1]
    )
    np.testing.assert_allclose(fitted.motion.body_pose[0], start.body_pose[0], atol=1e-6)  # frame 0 is the given start
    assert torch.equal(fitted.rgb, unfitted.rgb) and "fit" in fitted.timings
    from comovi_core.evaluation.run import consistency

    again = consistency(
        pipe.body_model, fitted.motion, fitted.motion_map, pipe.render_backend
    )  # 64x64, 5 frames: all of it
    assert fitted.motion_quality == pytest.approx({k: float(v) for k, v in again.items()}, abs=1e-4)
    assert 0 <= fitted.motion_quality["silhouette_iou"] <= 1 and fitted.motion_quality["frames"] == 5
    assert (
        "fitted to the generated motion map" in fitted.describe_motion()
        and "silhouette IoU" in fitted.describe_motion()
    )
    contact = fitted.motion.foot_contact  # the fit looked for standing feet and says what it found
    assert contact.shape == (5, 2) and contact.dtype == np.bool_
    assert f"left {int(contact[:, 0].sum())}, right {int(contact[:, 1].sum())} of 5 frames" in fitted.describe_motion()
    assert unfitted.motion_quality == {} and "no 3D motion" in unfitted.describe_motion()


@pytest.mark.parametrize(
    "kw,message",
    [
        (dict(num_frames=8), r"4k\+1"),
        (dict(image=torch.rand(3, 64, 80)), "multiples of 32"),
        (dict(prompt="  "), "prompt is empty"),
        (dict(mode="motion_to_video"), "needs a SMPL motion"),
        (dict(steps=0), "at least 1, got 0"),
    ],
)
def test_bad_pipeline_inputs(kw, message):
    with pytest.raises(CoMoViError, match=message):
        _call(_pipe(), **kw)


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--height", "100"], "multiples of 32"),
        (["--frames", "80"], r"4k\+1 .* try 77 or 81"),
        (["--prompt", ""], "prompt is empty"),
        (["--frames", "0"], r"4k\+1 and at least 5 .* got 0"),  # 0 is refused, not replaced by the default
        (["--height", "0"], "multiples of 32, got 0x128"),
        (["--steps", "0"], "at least 1, got 0"),
        (["--steps", "-1"], "at least 1, got -1"),
        (["--fps", "0"], "--fps must be a frame rate above 0, got 0.0"),  # was refused only after generating
        (["--shift", "0"], "--shift must be above 0, got 0.0"),  # was NaN poses after generating
        (["--guidance", "nan"], "--guidance must be 0 or more, got nan"),  # was a NaN video, exit 0
        (["--fov", "180"], "between 0 and 180, got 180.0"),
        (["--block-swap", "-1"], "--block-swap is a number of layer pairs .* got -1"),
    ],
)
def test_bad_cli_inputs_fail_before_work_and_write_nothing(tmp_path, caplog, argv, message):
    assert main(["--preset", "tiny", "--out", str(tmp_path / "o"), *argv]) == 2
    assert re.search(message, caplog.text)
    assert not (tmp_path / "o").exists()


def test_unwritable_output_folder_is_refused_before_generating(tmp_path, caplog, monkeypatch):
    import comovi_core.inference.pipeline

    monkeypatch.setattr(
        comovi_core.inference.pipeline.CoMoViPipeline, "__call__", lambda *a, **k: pytest.fail("generation ran")
    )
    (tmp_path / "file").write_text("x")
    assert main(["--preset", "tiny", "--out", str(tmp_path / "file")]) == 2 and "is a file, not a folder" in caplog.text
    assert main(["--preset", "tiny", "--out", str(tmp_path / "file" / "run")]) == 2 and "which is a file" in caplog.text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"] and (tmp_path / "file").read_text() == "x"


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc, which takes no new entries")
def test_a_folder_that_takes_no_new_entries_is_refused_in_one_line(caplog, monkeypatch):
    """/proc refuses new entries even to root, whose permission bits say writable: refused before generating."""
    import comovi_core.inference.pipeline

    monkeypatch.setattr(
        comovi_core.inference.pipeline.CoMoViPipeline, "__call__", lambda *a, **k: pytest.fail("generation ran")
    )
    before = set(os.listdir("/proc"))
    assert main(["--preset", "tiny", "--out", "/proc/comovi-run"]) == 2
    assert "the --out folder /proc/comovi-run cannot be written" in caplog.text
    assert "choose another --out folder" in caplog.text and "Traceback" not in caplog.text
    assert not [name for name in set(os.listdir("/proc")) - before if "comovi" in name]


def test_missing_weights_and_bad_start_pose(tmp_path, caplog):
    assert (
        main(
            [
                "--out",
                str(tmp_path / "o"),
                "--models",
                str(tmp_path / "models"),
                "--no-download",
                "--prompt",
                "a man runs",
                "--smpl",
                str(save_motion(tmp_path / "s.npz", demo_motion(num_frames=1))),
            ]
        )
        == 2
    )
    assert "huggingface.co/Wan-AI/Wan2.2-TI2V-5B-Diffusers" in caplog.text
    np.savez(
        tmp_path / "bad.npz",
        format_version=1,
        global_orient=np.zeros((1, 3)),
        body_pose=np.zeros((1, 72)),
        betas=np.zeros(10),
        transl=np.ones((1, 3)),
        fps=16.0,
        focal_length=[500.0, 500.0],
        principal_point=[64.0, 64.0],
        image_size=[128, 128],
    )
    caplog.clear()
    assert main(["--preset", "tiny", "--out", str(tmp_path / "o"), "--smpl", str(tmp_path / "bad.npz")]) == 2
    assert "'body_pose' must have shape (1, 69)" in caplog.text
    assert not (tmp_path / "o").exists()


def test_images_are_converted_padded_and_limited(tmp_path, monkeypatch):
    Image.new("L", (40, 20), 0).save(tmp_path / "gray.png")
    rgba = Image.new("RGBA", (20, 20), (255, 0, 0, 0))
    rgba.save(tmp_path / "rgba.png")
    gray = pad_to_aspect(load_image(tmp_path / "gray.png"), 64, 64)
    assert gray.shape == (3, 64, 64)
    assert (
        float(gray[:, 0, 32].min()) == 1.0 and float(gray[:, 32, 32].max()) == 0.0
    )  # white bands above, image in the middle
    assert float(pad_to_aspect(load_image(tmp_path / "rgba.png"), 32, 32).min()) == 1.0  # transparent -> white
    monkeypatch.setattr("comovi_core.files.images.MAX_IMAGE_PIXELS", 100)
    with pytest.raises(CoMoViError, match="resize it first"):
        load_image(tmp_path / "gray.png")
    assert MAX_IMAGE_PIXELS == 64_000_000
    (tmp_path / "x.png").write_bytes(b"nope")
    with pytest.raises(CoMoViError, match="could not read the start image"):
        load_image(tmp_path / "x.png")
    import struct
    import zlib

    header = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)  # a PNG that claims 20000x20000 RGB

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    (tmp_path / "huge.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))
    with pytest.raises(CoMoViError, match="far above .* megapixels .*resize it first"):
        load_image(tmp_path / "huge.png")


def test_video_to_motion_from_a_file(tmp_path, caplog):
    from comovi_core.files.video import mp4_writer

    frames = (np.random.default_rng(0).random((9, 96, 160, 3)) * 255).astype(np.uint8)  # another size and aspect
    with mp4_writer(tmp_path / "in.mp4", 96, 160, 16) as send:
        send(frames)
    assert (
        main(
            [
                "--preset",
                "tiny",
                "--mode",
                "video_to_motion",
                "--video",
                str(tmp_path / "in.mp4"),
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 0
    )
    meta = json.loads((tmp_path / "o" / "meta.json").read_text())
    assert meta["mode"] == "video_to_motion" and load_motion(tmp_path / "o" / "motion.npz").num_frames == 9
    caplog.clear()
    assert main(["--preset", "tiny", "--mode", "video_to_motion", "--out", str(tmp_path / "p")]) == 2
    assert "needs --video" in caplog.text and not (tmp_path / "p").exists()
    assert (
        main(
            [
                "--preset",
                "tiny",
                "--mode",
                "video_to_motion",
                "--video",
                str(tmp_path / "in.mp4"),
                "--frames",
                "13",
                "--out",
                str(tmp_path / "p"),
            ]
        )
        == 2
    )
    assert "has 9 frames" in caplog.text


def test_weights_from_a_models_folder(tmp_path):
    """The real-weights path (--models) on tiny files in the release/diffusers layouts."""
    from tiny_files import write_tiny_weights

    write_tiny_weights(
        tmp_path / "models" / "Wan2.2-TI2V-5B-Diffusers", tmp_path / "models" / "CoMoVi" / "comovi.safetensors"
    )
    save_motion(tmp_path / "start.npz", demo_motion(num_frames=1, height=64, width=64))
    out = tmp_path / "out"
    assert (
        main(
            [
                "--models",
                str(tmp_path / "models"),
                "--model-config",
                "tiny",
                "--no-download",
                "--smpl",
                str(tmp_path / "start.npz"),
                "--prompt",
                "a person jumps",
                "--height",
                "64",
                "--width",
                "64",
                "--frames",
                "5",
                "--steps",
                "2",
                "--dtype",
                "float32",
                "--device",
                "cpu",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    meta = json.loads((out / "meta.json").read_text())
    assert meta["has_3d_head"] and "3D head: 57 tensors" in meta["weights"] and meta["preset"] == "wan2.2-ti2v-5b"
    assert read_video(out / "rgb.mp4").shape == (5, 64, 64, 3) and load_motion(out / "motion.npz").num_frames == 5


def test_vae_from_another_folder_or_the_original_single_file(tmp_path):
    """--vae: a diffusers folder gives exactly the default run; the original single file (Wan2.2 names) runs too."""
    from safetensors.torch import save_file
    from tiny_files import write_tiny_weights

    from comovi_core.codecs.vae_files import diffusers_to_original_vae_key, load_wan22_vae

    base = tmp_path / "models" / "Wan2.2-TI2V-5B-Diffusers"
    write_tiny_weights(base, tmp_path / "models" / "CoMoVi" / "comovi.safetensors")
    save_motion(tmp_path / "start.npz", demo_motion(num_frames=1, height=64, width=64))
    vae = load_wan22_vae(base / "vae")
    vae.save_pretrained(tmp_path / "elsewhere")
    save_file(
        {diffusers_to_original_vae_key(k, 1): v.contiguous() for k, v in vae.state_dict().items()},
        str(tmp_path / "wan2.2_vae.safetensors"),
    )
    common = [
        "--models",
        str(tmp_path / "models"),
        "--model-config",
        "tiny",
        "--no-download",
        "--smpl",
        str(tmp_path / "start.npz"),
        "--prompt",
        "a person jumps",
        "--height",
        "64",
        "--width",
        "64",
        "--frames",
        "5",
        "--steps",
        "2",
        "--dtype",
        "float32",
        "--device",
        "cpu",
    ]
    for name, extra in (
        ("default", []),
        ("folder", ["--vae", str(tmp_path / "elsewhere")]),
        ("single", ["--vae", str(tmp_path / "wan2.2_vae.safetensors")]),
    ):
        assert main([*common, *extra, "--out", str(tmp_path / name)]) == 0
    default, folder, single = (read_video(tmp_path / n / "rgb.mp4") for n in ("default", "folder", "single"))
    assert np.array_equal(default, folder) and single.shape == (5, 64, 64, 3)
    meta = json.loads((tmp_path / "single" / "meta.json").read_text())
    assert meta["vae"].endswith("wan2.2_vae.safetensors")
    assert main([*common, "--vae", str(tmp_path / "missing.pth"), "--out", str(tmp_path / "bad")]) == 2
    assert not (tmp_path / "bad").exists()


def test_start_pose_estimated_from_keypoints_json(tmp_path, caplog):
    """--keypoints: the start pose is fitted to an OpenPose/DWPose JSON of the start image (here 96x64, another
    aspect than the 128x128 output; the camera is padded like the image)."""
    from comovi_core.conditions.keypoints import BODY_KEYPOINTS, joint_keypoints
    from comovi_core.recovery.estimate import estimate_start_pose, keypoints_from_pose_json

    body = load_body_model(None)
    truth = demo_motion(num_frames=2, height=96, width=64)
    with torch.no_grad():
        joints = body(
            torch.as_tensor(truth.global_orient[1:]),
            torch.as_tensor(truth.body_pose[1:]),
            None,
            torch.as_tensor(truth.transl[1:]),
        ).joints[0]
    uv = truth.camera.project(joint_keypoints(joints)) - 0.5  # OpenPose JSON: pixel centres at integers
    flat = [0.0] * 54
    for k, coco in enumerate(BODY_KEYPOINTS):
        flat[3 * coco : 3 * coco + 3] = [float(uv[k, 0]), float(uv[k, 1]), 1.0]
    pose_json = {"people": [{"pose_keypoints_2d": flat}], "canvas_height": 96, "canvas_width": 64}
    (tmp_path / "pose.json").write_text(json.dumps([pose_json]))
    assert (
        main(
            [
                "--preset",
                "tiny",
                "--keypoints",
                str(tmp_path / "pose.json"),
                "--frames",
                "5",
                "--steps",
                "1",
                "--out",
                str(tmp_path / "out"),
            ]
        )
        == 0
    )
    motion = load_motion(tmp_path / "out" / "motion.npz")
    expected = estimate_start_pose(body, keypoints_from_pose_json(pose_json)[0], 96, 64)
    np.testing.assert_allclose(motion.body_pose[0], expected.body_pose[0], atol=1e-5)
    assert motion.camera == expected.camera.padded_to(128, 128)
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert meta["start_pose"].startswith("estimated from")
    (tmp_path / "bad.json").write_text("{not json")
    assert main(["--preset", "tiny", "--keypoints", str(tmp_path / "bad.json"), "--out", str(tmp_path / "bad")]) == 2
    assert "could not read the keypoints JSON" in caplog.text and not (tmp_path / "bad").exists()


def test_model_offload_visits_the_device_only_while_working():
    """offload: text encoder, VAE and transformer each go to the device for their stage and back to the CPU
    after it (``to(device)`` gets the pipeline's torch.device; ``to("cpu")`` the string), in pipeline order."""
    components = tiny_components(0)
    moves = []
    modules = {
        "text": components["text_encoder"].model,
        "vae": components["vae"],
        "transformer": components["transformer"],
    }
    for name, module in modules.items():

        def spy(*args, _name=name, _to=module.to, **kwargs):
            moves.append((_name, "cpu" if args and args[0] == "cpu" else "device"))
            return _to(*args, **kwargs)

        module.to = spy
    pipe = CoMoViPipeline(body_model=load_body_model(None), device="cpu", offload=True, **components)
    offloaded = _call(pipe)
    pairs = [
        ("text", "device"),
        ("text", "cpu"),
        ("vae", "device"),
        ("vae", "cpu"),
        ("transformer", "device"),
        ("transformer", "cpu"),
        ("vae", "device"),
        ("vae", "cpu"),
    ]
    assert moves == pairs
    reference = _call(_pipe())
    assert torch.equal(offloaded.rgb, reference.rgb)  # same numbers with and without offload


def test_run_folder_is_published_whole(tmp_path, monkeypatch):
    """A crash while writing leaves nothing; a re-run into a used folder replaces our files, keeps the user's."""
    import comovi_core.body.motion_file as motion_file

    def crash(*_):
        raise OSError("disk full")

    with monkeypatch.context() as patch:
        patch.setattr(motion_file, "save_motion", crash)
        with pytest.raises(OSError, match="disk full"):
            main(["--preset", "tiny", "--out", str(tmp_path / "run"), "--frames", "5", "--steps", "1"])
    assert list(tmp_path.iterdir()) == []  # no half run, no hidden staging folder
    used = tmp_path / "used"
    used.mkdir()
    (used / "motion.npz").write_bytes(b"an older run")
    (used / "notes.txt").write_text("mine")
    assert main(["--preset", "tiny", "--out", str(used), "--frames", "5", "--steps", "1"]) == 0
    assert sorted(p.name for p in used.iterdir()) == [
        "meta.json",
        "motion.npz",
        "motion_map.mp4",
        "notes.txt",
        "rgb.mp4",
    ]
    assert load_motion(used / "motion.npz").num_frames == 5 and (used / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["used"]


def test_start_pose_estimated_from_the_image_with_an_hmr_checkpoint(tmp_path, caplog):
    """--image + --estimator (+ --keypoints for the person box and the refinement): the start pose is the one
    ``estimate_from_image`` gives for that picture, and meta.json says so; without --image it is refused."""
    from comovi_core.body.smpl import camera_vertices
    from comovi_core.conditions.keypoints import BODY_KEYPOINTS, joint_keypoints
    from comovi_core.recovery.estimate import estimate_from_image, read_pose_json
    from comovi_core.recovery.hmr.config import PRESETS
    from comovi_core.recovery.hmr.loading import load_hmr2, save_hmr2
    from comovi_core.recovery.hmr.model import HMR2

    torch.manual_seed(0)
    save_hmr2(HMR2(PRESETS["tiny"]).eval(), tmp_path / "hmr2.safetensors")
    body = load_body_model(None)
    truth = demo_motion(num_frames=1, height=96, width=64)
    with torch.no_grad():
        uv = truth.camera.project(joint_keypoints(camera_vertices(body, truth).joints[0])) - 0.5  # OpenPose JSON
    flat = [0.0] * 54
    for k, coco in enumerate(BODY_KEYPOINTS):
        flat[3 * coco : 3 * coco + 3] = [float(uv[k, 0]), float(uv[k, 1]), 1.0]
    (tmp_path / "pose.json").write_text(
        json.dumps({"people": [{"pose_keypoints_2d": flat}], "canvas_height": 96, "canvas_width": 64})
    )
    picture = np.full((96, 64, 3), 255, np.uint8)
    picture[20:80, 24:40] = (90, 110, 150)
    Image.fromarray(picture).save(tmp_path / "start.png")
    common = ["--preset", "tiny", "--estimator", str(tmp_path / "hmr2.safetensors"), "--frames", "5", "--steps", "1"]
    argv = [*common, "--image", str(tmp_path / "start.png"), "--keypoints", str(tmp_path / "pose.json")]
    assert main([*argv, "--out", str(tmp_path / "out")]) == 0
    motion = load_motion(tmp_path / "out" / "motion.npz")
    expected, info = estimate_from_image(
        body,
        torch.from_numpy(picture.astype(np.float32) / 255),
        load_hmr2(tmp_path / "hmr2.safetensors"),
        read_pose_json(tmp_path / "pose.json")[0],
        None,
        None,
        50.0,
    )
    np.testing.assert_allclose(motion.body_pose[0], expected.body_pose[0], atol=1e-4)
    np.testing.assert_allclose(motion.betas, expected.betas, atol=1e-5)
    assert motion.camera == expected.camera.padded_to(128, 128)
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert meta["start_pose"] == f"estimated from {tmp_path / 'start.png'} ({info['estimator']})"
    assert main([*common, "--out", str(tmp_path / "bad")]) == 2
    assert "--estimator estimates the start pose from --image" in caplog.text and not (tmp_path / "bad").exists()


class _Oracle:
    """A ``BatchEstimator`` that answers ``motion``'s bodies (what a real estimator would see, without its noise) and
    records the boxes it was given."""

    name = "oracle"

    def __init__(self, motion):
        self.motion, self.boxes = motion, []

    def __call__(self, images, boxes, camera, indices):
        from comovi_core.recovery.hmr.estimator import BodyEstimate

        self.boxes += list(boxes)
        m = self.motion
        return [
            BodyEstimate(
                *(torch.from_numpy(np.asarray(a, np.float32)) for a in (m.global_orient[i], m.body_pose[i], m.betas)),
                torch.from_numpy(m.transl[i]).float(),
                camera,
                "oracle",
                box,
            )
            for i, box in zip(indices, boxes)
        ]


def test_the_fit_starts_from_an_estimators_bodies_of_the_generated_video(monkeypatch):
    """Without a 3D head and with an estimator, the pipeline runs the estimator on its generated video (the person's
    boxes from the motion map's silhouette, the map's camera), gives the estimates the start's body shape, starts the
    fit from them and says per frame whether the fit or the estimate was kept."""
    import dataclasses

    from comovi_core.capture.track import boxes_from_masks
    from comovi_core.capture.video import with_body_shape
    from comovi_core.inference.pipeline import GenerationResult
    from comovi_core.motion_map.decode import body_mask
    from comovi_core.motion_map.render import render_motion
    from comovi_core.recovery import fitting
    from comovi_core.recovery.fitting import FitOptions

    body = load_body_model(None)
    truth = demo_motion(num_frames=5, height=96, width=96, fps=4.0)  # a slow wave: smoothing keeps it
    maps = render_motion(body, truth, backend="torch").images
    start = dataclasses.replace(
        truth, global_orient=truth.global_orient[:1], body_pose=truth.body_pose[:1], transl=truth.transl[:1]
    )
    # the estimator sees another body shape where the truth's joints are seen
    oracle = _Oracle(with_body_shape(body, truth, truth.betas + 1.0))
    seen, real_fit = {}, fitting.fit_motion
    options = FitOptions(iterations=20, track_steps=5, relabel_rounds=0, splat_steps=10, flip_steps=0, contact_steps=0)

    def fit_spy(*args, **kw):
        seen.update(kw)
        return real_fit(*args, options=options, **kw)

    monkeypatch.setattr(fitting, "fit_motion", fit_spy)
    pipe = CoMoViPipeline(None, None, None, body, estimator=oracle)
    timings = {}
    motion, source, _, info = pipe._recover_motion(
        None, maps, maps, start, truth.camera, truth.fps, True, None, timings
    )
    np.testing.assert_array_equal(np.stack(oracle.boxes), np.stack(boxes_from_masks(body_mask(maps))))
    init = seen["init"]  # back in the start's shape: the joints where the truth's are
    np.testing.assert_array_equal(init.betas, truth.betas)
    assert init.camera == truth.camera and "estimate" in timings and "fit" in timings
    with torch.no_grad():
        to_truth = (camera_vertices(body, init).joints - camera_vertices(body, truth).joints).norm(dim=-1).mean()
    assert float(to_truth) < 0.01, float(to_truth)  # metres: the shape round trip and the smoothing
    sources = info["frame_sources"]
    assert source == "fitted_to_motion_map" and info["started_from"] == "per-frame estimates of the video by oracle"
    assert len(sources) == 5 and sources[0] == "start" and set(sources[1:]) <= {"fit", "estimate"}
    with torch.no_grad():  # a frame kept from the estimates is the estimate (no foot locking here)
        fitted, estimated = camera_vertices(body, motion).joints, camera_vertices(body, init).joints
    for t, where in enumerate(sources[1:], 1):
        gap = float((fitted[t] - estimated[t]).norm(dim=-1).max())
        assert (gap < 1e-4) == (where == "estimate"), (t, where, gap)
    result = GenerationResult(
        maps, maps, motion, {}, source, {"silhouette_iou": 1, "part_agreement": 1, "normal_error_deg": 0}, {}, info
    )
    kept = sources.count("estimate")
    assert f"fit started from per-frame estimates of the video by oracle; the estimate kept in {kept} of 4" in (
        result.describe_motion()
    )

    # a capture that loses the person in most frames is not used: the fit starts from the start pose and says why
    blank = maps.clone()
    blank[2:] = 1.0
    seen.clear()
    _, _, _, info = pipe._recover_motion(None, blank, blank, start, truth.camera, truth.fps, True, None, {})
    assert seen["init"] is None and "frame_sources" not in info
    rejected = "the start pose (the per-frame estimates by oracle were rejected: person lost"
    assert info["started_from"].startswith(rejected), info


def test_cli_fit_starts_from_the_estimators_estimates_unless_told_not_to(tmp_path, monkeypatch, quick_fit):
    """--estimator with weights that have no 3D head: the fit starts from its per-frame estimates of the generated
    video (meta.json's "fit" says so, per frame); --fit-from-start fits from the start pose."""
    from comovi_core.inference import tiny
    from comovi_core.recovery.hmr.config import PRESETS
    from comovi_core.recovery.hmr.loading import save_hmr2
    from comovi_core.recovery.hmr.model import HMR2

    def headless(seed):
        components = real(seed)
        components["transformer"].smpl_head = None
        return components

    real = tiny.tiny_components
    monkeypatch.setattr(tiny, "tiny_components", headless)
    torch.manual_seed(0)
    save_hmr2(HMR2(PRESETS["tiny"]).eval(), tmp_path / "hmr2.safetensors")
    save_motion(tmp_path / "start.npz", demo_motion(num_frames=1, height=128, width=128))
    common = [
        "--preset",
        "tiny",
        "--estimator",
        str(tmp_path / "hmr2.safetensors"),
        "--smpl",
        str(tmp_path / "start.npz"),
    ]
    common += ["--frames", "5", "--steps", "1"]
    assert main([*common, "--out", str(tmp_path / "a")]) == 0
    meta = json.loads((tmp_path / "a" / "meta.json").read_text())
    assert (
        not meta["has_3d_head"] and meta["motion_source"] == "fitted_to_motion_map" and "estimate" in meta["timings_s"]
    )
    assert meta["fit"]["started_from"] == "per-frame estimates of the video by HMR 2.0", meta["fit"]
    assert len(meta["fit"]["frame_sources"]) == 5 and meta["fit"]["frame_sources"][0] == "start"
    assert main([*common, "--fit-from-start", "--out", str(tmp_path / "b")]) == 0
    meta = json.loads((tmp_path / "b" / "meta.json").read_text())
    assert meta["fit"] == {"started_from": "the start pose"} and "estimate" not in meta["timings_s"]
