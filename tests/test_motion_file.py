"""The canonical motion file: round trip, validation messages, atomic writes."""

import numpy as np
import pytest

from comovi_core.body.camera import PinholeCamera
from comovi_core.body.mannequin import demo_motion
from comovi_core.body.motion_file import SMPLMotion, load_motion, save_motion
from comovi_core.errors import CoMoViError


def test_round_trip_is_exact(tmp_path):
    motion = demo_motion(num_frames=9)
    path = save_motion(tmp_path / "motion.npz", motion)
    back = load_motion(path)
    for key in ("global_orient", "body_pose", "betas", "transl"):
        np.testing.assert_array_equal(getattr(back, key), getattr(motion, key))
    assert back.fps == 16.0 and back.camera == motion.camera and back.num_frames == 9
    assert sorted(p.name for p in tmp_path.iterdir()) == ["motion.npz"]  # no temporary left behind
    assert path.stat().st_mode & 0o777 == 0o644


def _write(path, **overrides):
    m = demo_motion(num_frames=4)
    arrays = dict(
        format_version=1,
        global_orient=m.global_orient,
        body_pose=m.body_pose,
        betas=m.betas,
        transl=m.transl,
        fps=16.0,
        focal_length=[1000.0, 1000.0],
        principal_point=[640.0, 352.0],
        image_size=[704, 1280],
    )
    arrays.update(overrides)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"body_pose": np.zeros((4, 72))}, r"'body_pose' must have shape \(4, 69\), got \(4, 72\)"),
        ({"betas": np.zeros(16)}, r"'betas' must have shape \(10,\)"),
        ({"global_orient": np.full((4, 3), np.nan)}, r"'global_orient' contains NaN"),
        ({"transl": np.zeros((4, 3))}, r"transl z must be > 0"),
        ({"focal_length": [0.0, 1000.0]}, r"focal_length must be two positive"),
        ({"focal_length": [-5.0, -5.0]}, r"focal_length must be two positive"),
        ({"image_size": [8, 1280]}, r"at least 16 pixels"),
        ({"format_version": 7}, r"version 7 is not supported"),
        ({"fps": None}, r"missing \['fps'\]"),
        ({"focal_length": [1000.0]}, r"camera entries have the wrong size"),
    ],
)
def test_bad_files_give_clear_errors(tmp_path, overrides, message):
    with pytest.raises(CoMoViError, match=message):
        load_motion(_write(tmp_path / "m.npz", **overrides))


def test_failed_save_leaves_no_file(tmp_path):
    motion = demo_motion(num_frames=2)
    with pytest.raises(CoMoViError, match=r"\.npz"):
        save_motion(tmp_path / "motion.mp4", motion)
    good = save_motion(tmp_path / "motion.npz", motion)
    before = good.read_bytes()
    motion.camera = "not a camera"  # makes the write fail half-way
    with pytest.raises(AttributeError):
        save_motion(good, motion)
    assert good.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["motion.npz"]


def test_camera_helpers():
    cam = PinholeCamera((1000.0, 1000.0), (640.0, 352.0), (704, 1280))
    small = cam.resized(352, 640)
    assert small.focal_length == (500.0, 500.0) and small.principal_point == (320.0, 176.0)
    import torch

    uv = cam.project(torch.tensor([[0.0, 0.0, 4.0], [1.0, -0.5, 2.0]]))
    torch.testing.assert_close(uv, torch.tensor([[640.0, 352.0], [1140.0, 102.0]]))
    rays = cam.pixel_rays()
    torch.testing.assert_close(rays[0, 0], torch.tensor([(0.5 - 640) / 1000, (0.5 - 352) / 1000, 1.0]))
    with pytest.raises(CoMoViError):
        SMPLMotion(np.zeros((3, 3)), np.zeros((3, 69)), np.zeros(10), np.ones((2, 3)), 16.0, cam)


@pytest.mark.parametrize("size", [(400, 300), (300, 900), (352, 640)], ids=["tall", "wide", "same-aspect"])
def test_padded_camera_follows_the_padded_image(size):
    """A dot drawn where the camera projects a point lands, after pad_to_aspect, where the padded camera projects it."""
    import torch
    from PIL import Image, ImageDraw

    from comovi_core.inference.inputs import pad_to_aspect

    h, w = size
    cam = PinholeCamera((0.9 * w, 0.9 * w), (w / 2 + 7, h / 2 - 5), (h, w))
    point = torch.tensor([0.21, -0.13, 2.0])
    u, v = (float(c) for c in cam.project(point))
    image = Image.new("RGB", (w, h), (255, 255, 255))
    ImageDraw.Draw(image).ellipse((u - 0.5 - 3, v - 0.5 - 3, u - 0.5 + 3, v - 0.5 + 3), fill=(255, 0, 0))
    padded = pad_to_aspect(image, 176, 320)  # (3, H, W)
    redness = padded[0] - padded[1]
    rows, cols = torch.nonzero(redness > 0.5 * redness.max(), as_tuple=True)
    found = torch.stack([cols.float().mean() + 0.5, rows.float().mean() + 0.5])
    expected = cam.padded_to(176, 320).project(point)
    assert torch.allclose(found, expected, atol=0.75), (found, expected)
    if size == (352, 640):
        assert cam.padded_to(176, 320) == cam.resized(176, 320)


def test_concat_refuses_different_image_sizes():
    from comovi_core.body.mannequin import demo_motion
    from comovi_core.body.motion_file import concat_motions
    from comovi_core.errors import CoMoViError

    a, b = demo_motion(num_frames=3, height=64, width=64), demo_motion(num_frames=3, height=64, width=96)
    assert concat_motions(a, a).num_frames == 5 and concat_motions(a, a, skip_shared_frame=False).num_frames == 6
    with pytest.raises(CoMoViError, match="different image sizes"):
        concat_motions(a, b)


def test_full_pose_is_root_then_body_joints():
    motion = demo_motion(num_frames=3)
    full = motion.full_pose
    assert full.shape == (3, 72)
    np.testing.assert_array_equal(full[:, :3], motion.global_orient)
    np.testing.assert_array_equal(
        full.reshape(3, 24, 3)[:, 19], motion.body_pose.reshape(3, 23, 3)[:, 18]
    )  # right elbow
