"""Start pose from 2D keypoints (COCO-18, as DWPose/OpenPose give them) and the EstimateSMPL node."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from comovi_core.body.mannequin import demo_motion
from comovi_core.body.rotations import axis_angle_to_matrix, matrix_to_axis_angle
from comovi_core.body.smpl import load_body_model
from comovi_core.conditions.keypoints import BODY_KEYPOINTS, joint_keypoints
from comovi_core.errors import CoMoViError
from comovi_core.evaluation.metrics import motion_errors
from comovi_core.recovery.estimate import (
    estimate_start_pose,
    keypoints_from_pose_json,
    reprojection_error_px,
)

H, W = 704, 1280


@pytest.fixture(scope="module")
def body():
    return load_body_model(None)


def _posed(body, frame: int, yaw: float):
    """A pose of the demo motion turned by ``yaw`` about the vertical axis, and its COCO-18 keypoints (pixels)."""
    truth = demo_motion(num_frames=8, height=H, width=W)
    turned = axis_angle_to_matrix(
        torch.as_tensor(truth.global_orient[frame : frame + 1], dtype=torch.float64)
    ) @ axis_angle_to_matrix(torch.tensor([[0.0, yaw, 0.0]], dtype=torch.float64))
    orient = matrix_to_axis_angle(turned).float()
    with torch.no_grad():
        out = body(
            orient,
            torch.as_tensor(truth.body_pose[frame : frame + 1]),
            None,
            torch.as_tensor(truth.transl[frame : frame + 1]),
        )
    keypoints = np.zeros((18, 3), np.float32)
    keypoints[list(BODY_KEYPOINTS), :2] = truth.camera.project(joint_keypoints(out.joints[0])).numpy()
    keypoints[list(BODY_KEYPOINTS), 2] = 1.0
    return orient, out, keypoints, truth


def _angle_deg(a, b) -> float:
    r = axis_angle_to_matrix(torch.as_tensor(a, dtype=torch.float64)).T @ axis_angle_to_matrix(
        torch.as_tensor(b, dtype=torch.float64)
    )
    return math.degrees(math.acos(max(-1.0, min(1.0, (float(r.trace()) - 1) / 2))))


@pytest.mark.parametrize("frame, yaw", [(3, 0.6), (6, 2.8)], ids=["three-quarter", "from-behind"])
def test_start_pose_from_keypoints(body, frame, yaw):
    """Measured when written: 0.5 px / 12 mm PA-MPJPE / 4.5 deg (three-quarter view), 1.3 px / 45 mm / 16 deg (from
    behind)."""
    orient, out, keypoints, truth = _posed(body, frame, yaw)
    estimate = estimate_start_pose(body, keypoints, H, W, iterations=150)
    assert estimate.num_frames == 1 and estimate.camera == truth.camera  # 50-degree default = the demo camera
    assert reprojection_error_px(body, estimate, keypoints) < 3.0
    assert _angle_deg(estimate.global_orient[0], orient[0].numpy()) < 25  # facing the right way (front/back, turn)
    assert abs(estimate.transl[0, 2] - truth.transl[frame, 2]) < 0.3  # metres, from the skeleton's size
    with torch.no_grad():
        fitted = body(
            torch.as_tensor(estimate.global_orient),
            torch.as_tensor(estimate.body_pose),
            None,
            torch.as_tensor(estimate.transl),
        )
    assert motion_errors(fitted.joints, out.joints)["pa_mpjpe_mm"] < 60


def test_pose_json_in_pixels_or_normalised(body):
    """OpenPose JSON counts pixels from their centres (x = column), our cameras from their corners (u = column +
    0.5): pixel and normalised JSON both come back in our convention."""
    _, _, keypoints, _ = _posed(body, 3, 0.6)
    seen = keypoints[:, 2:] > 0
    openpose = np.where(seen, keypoints - [0.5, 0.5, 0.0], keypoints)
    pixels = {"people": [{"pose_keypoints_2d": openpose.reshape(-1).tolist()}], "canvas_height": H, "canvas_width": W}
    normalised = {
        "people": [{"pose_keypoints_2d": (openpose / [W, H, 1]).reshape(-1).tolist()}],
        "canvas_height": H,
        "canvas_width": W,
    }
    a, size = keypoints_from_pose_json(pixels)
    b, _ = keypoints_from_pose_json(normalised)
    assert size == (H, W) and np.allclose(a, keypoints) and np.allclose(b, keypoints, atol=1e-3)
    for frame, message in (
        ({"people": [], "canvas_height": H, "canvas_width": W}, "no person"),
        ({"people": [{"pose_keypoints_2d": [1.0] * 9}], "canvas_height": H, "canvas_width": W}, "18 body keypoints"),
        ({"people": [{"pose_keypoints_2d": keypoints.reshape(-1).tolist()}]}, "canvas_height"),
    ):
        with pytest.raises(CoMoViError, match=message):
            keypoints_from_pose_json(frame)
    with pytest.raises(CoMoViError, match="person 2"):
        keypoints_from_pose_json(pixels, person=2)
    few = keypoints.copy()
    few[3:, 2] = 0
    with pytest.raises(CoMoViError, match="keypoints are confident"):
        estimate_start_pose(body, few, H, W)


def test_cli_writes_the_start_pose_from_a_pose_json(body, tmp_path):
    """`python -m comovi_core.estimate POSE.json --out start.npz`: a one-frame motion whose joints reproject onto the
    keypoints, usable as `generate --smpl`; a missing file is a one-line error (exit 2)."""
    import json

    from comovi_core.body.motion_file import load_motion
    from comovi_core.recovery.estimate import main

    _, _, keypoints, truth = _posed(body, 3, 0.6)
    frame = {"people": [{"pose_keypoints_2d": keypoints.reshape(-1).tolist()}], "canvas_height": H, "canvas_width": W}
    (tmp_path / "pose.json").write_text(json.dumps([frame]))  # a list of frames, as ComfyUI's POSE_KEYPOINT
    assert main([str(tmp_path / "pose.json"), "--out", str(tmp_path / "start.npz")]) == 0
    start = load_motion(tmp_path / "start.npz")
    assert start.num_frames == 1 and start.camera == truth.camera
    assert reprojection_error_px(body, start, keypoints) < 3.0
    assert main([str(tmp_path / "missing.json"), "--out", str(tmp_path / "x.npz")]) == 2
    assert main([str(tmp_path / "pose.json"), "--out", str(tmp_path / "x.npz"), "--fov", "0"]) == 2
    assert not (tmp_path / "x.npz").exists()
