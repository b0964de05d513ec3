"""Estimate the start SMPL pose (pose, shape, place in the camera) from the start image and/or 2D keypoints.

Image path (``estimate_from_image``): a person box (from the keypoints, a mask, or a detector), the HMR 2.0
network (4D-Humans, MIT) on the crop -> SMPL pose, betas and a weak-perspective camera, turned into a
translation for the start image's camera (HMR 2.0 estimates no focal length: the field of view sets it, and
the result says so). With keypoints, a short refinement then moves the body so its joints reproject onto
them, pulled toward the network's pose and shape and kept within joint limits.

Keypoint path (``estimate_start_pose``, the fallback without estimator weights): the body is fitted from
the rest pose so its joints project onto DWPose / OpenPose COCO-18 keypoints, with joint limits; both
facing directions are tried. It can promise joints that reproject onto the keypoints and left/right,
front/back from their labels; it cannot know depth along the view ray of limbs (a 2D skeleton fits several
3D poses) nor body shape (betas stay zero). SMPL's joints are not OpenPose's anatomical points (notably the
hips); expect a few centimetres of systematic offset on real images.

    python -m comovi_core.estimate IMAGE.png --estimator models/smpl_estimators/hmr2.ckpt --out start.npz
    python -m comovi_core.estimate IMAGE.png --keypoints POSE.json [--estimator ...] --out start.npz
    python -m comovi_core.estimate POSE.json --out start.npz [--body-model models/smpl] [--fov 50]

writes a one-frame motion (the start pose and its camera) for ``generate --smpl start.npz``.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import sys
from pathlib import Path

import numpy as np
import torch

from .body.motion_file import SMPLMotion
from .body.rotations import axis_angle_to_matrix, matrix_to_axis_angle
from .cli import run_cli
from .errors import CoMoViError
from .fit_prior import joint_limits
from .motion_map.camera import PinholeCamera

log = logging.getLogger("comovi_core.estimate")

# OpenPose COCO-18 keypoint index -> SMPL joint index (nose, eyes and ears have no SMPL joint)
OPENPOSE_TO_SMPL: dict[int, int] = {1: 12, 2: 17, 3: 19, 4: 21, 5: 16, 6: 18, 7: 20, 8: 2, 9: 5, 10: 8, 11: 1, 12: 4,
                                    13: 7}
MIN_KEYPOINTS = 6
_FLIP = (math.pi, 0.0, 0.0)  # SMPL y-up, facing +z -> camera y-down, facing the camera


def keypoints_from_pose_json(frame: dict, person: int = 0) -> tuple[np.ndarray, tuple[int, int]]:
    """One OpenPose-style frame dict (``people``, ``canvas_height``, ``canvas_width``) -> ((18, 3) x, y, conf in
    pixels, (H, W)). Coordinates in [0, 1] (normalised by some tools) are scaled to pixels."""
    people = frame.get("people") or []
    if not people:
        raise CoMoViError("no person in the keypoints: run a pose estimator (DWPose/OpenPose) on the start image")
    if not 0 <= person < len(people):
        raise CoMoViError(f"person {person} asked for, but the keypoints hold {len(people)} (0..{len(people) - 1})")
    try:
        height, width = int(frame["canvas_height"]), int(frame["canvas_width"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CoMoViError("the keypoints carry no canvas_height/canvas_width: cannot place them in the image") from exc
    flat = people[person].get("pose_keypoints_2d") or []
    if len(flat) < 18 * 3:
        raise CoMoViError(f"expected 18 body keypoints (COCO-18, 54 numbers), got {len(flat)} numbers")
    points = np.asarray(flat[: 18 * 3], np.float64).reshape(18, 3)
    seen = points[:, 2] > 0
    if seen.any() and np.all(points[seen, :2] <= 1.0 + 1e-6):
        points[:, 0] *= width
        points[:, 1] *= height
    return points.astype(np.float32), (height, width)


def read_pose_json(path: Path, person: int = 0) -> tuple[np.ndarray, tuple[int, int]]:
    """An OpenPose/DWPose JSON file (a frame, or a list of them: the first is used) -> ``keypoints_from_pose_json``."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise CoMoViError(f"could not read the keypoints JSON {path}: {exc}") from exc
    frame = data[0] if isinstance(data, list) and data else data
    if not isinstance(frame, dict):
        raise CoMoViError(f"{path}: expected an OpenPose-style JSON object with 'people', 'canvas_height', "
                          "'canvas_width'")
    return keypoints_from_pose_json(frame, person)


def _joint_targets(keypoints: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """-> (SMPL joint indices (K,), 2D targets (K, 2), confidences (K,)) for the mapped keypoints."""
    idx = list(OPENPOSE_TO_SMPL)
    kp = torch.as_tensor(keypoints[idx], dtype=torch.float32)
    conf = kp[:, 2].clamp(0, 1)
    if int((conf > 0.1).sum()) < MIN_KEYPOINTS:
        raise CoMoViError(f"only {int((conf > 0.1).sum())} body keypoints are confident; at least {MIN_KEYPOINTS} of neck, "
                          "shoulders, elbows, wrists, hips, knees and ankles are needed (is the whole body in view?)")
    return torch.tensor([OPENPOSE_TO_SMPL[i] for i in idx]), kp[:, :2], conf


def _initial_translation(body, camera: PinholeCamera, joints_idx, targets, conf) -> torch.Tensor:
    """Distance from the 2D vs 3D size of the visible skeleton; x, y from its 2D centre."""
    rest = body(torch.tensor([_FLIP]), torch.zeros(1, 69)).joints[0]  # (24, 3)
    seen = conf > 0.1
    j3, j2 = rest[joints_idx[seen]], targets[seen]
    size3 = (j3[:, :2] - j3[:, :2].mean(0)).norm(dim=-1).mean()
    size2 = (j2 - j2.mean(0)).norm(dim=-1).mean().clamp_min(1.0)
    z = float(camera.focal_length[1]) * float(size3) / float(size2)
    (fx, fy), (cx, cy) = camera.focal_length, camera.principal_point
    centre = j2.mean(0)
    offset = j3.mean(0)
    return torch.tensor([(float(centre[0]) - cx) * z / fx - float(offset[0]), (float(centre[1]) - cy) * z / fy - float(offset[1]), z])


def _fit(body, camera, joints_idx, targets, conf, yaw: float, iterations: int):
    flip = torch.tensor(_FLIP)
    start_orient = matrix_to_axis_angle(axis_angle_to_matrix(flip) @ axis_angle_to_matrix(torch.tensor([0.0, yaw, 0.0])))
    orient = start_orient.clone()[None].requires_grad_(True)
    pose = torch.zeros(1, 69, requires_grad=True)
    transl = _initial_translation(body, camera, joints_idx, targets, conf)[None].requires_grad_(True)
    scale = 0.02 * max(camera.height, camera.width)
    for params, steps in (([orient, transl], iterations // 3), ([orient, pose, transl], iterations)):  # global first, then all
        optimiser = torch.optim.Adam(params, lr=0.02)
        for _ in range(steps):
            joints = body(orient, pose, None, transl).joints[0]
            error = (camera.project(joints[joints_idx]) - targets).square().sum(-1) / scale**2
            data = (conf * torch.log1p(error)).sum() / conf.sum()
            loss = data + 0.01 * pose.square().sum() + joint_limits(pose, hinge_axes=True).sum()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    return float(data.detach()), orient.detach(), pose.detach(), transl.detach()


def estimate_start_pose(body, keypoints: np.ndarray, height: int, width: int, fov_degrees: float = 50.0,
                        iterations: int = 240, fps: float = 16.0) -> SMPLMotion:
    """keypoints (18, 3) COCO-18 in pixels (x, y, confidence) -> a one-frame SMPLMotion (mean shape)."""
    if keypoints.shape != (18, 3) or not np.all(np.isfinite(keypoints)):
        raise CoMoViError(f"keypoints must be a finite (18, 3) array (COCO-18 x, y, confidence), got {keypoints.shape}")
    if not 1.0 <= fov_degrees <= 170.0:
        raise CoMoViError(f"field of view {fov_degrees} degrees is outside 1..170: give the start image's vertical "
                          "field of view (about 50 for a phone or webcam picture)")
    camera = PinholeCamera.default_for(height, width, fov_degrees)
    with torch.inference_mode(False), torch.enable_grad():
        body = copy.deepcopy(body).cpu().float()
        joints_idx, targets, conf = _joint_targets(keypoints)
        fits = [_fit(body, camera, joints_idx, targets, conf, yaw, iterations) for yaw in (0.0, math.pi)]
    _, orient, pose, transl = min(fits, key=lambda f: f[0])
    return SMPLMotion(orient.numpy(), pose.numpy(), np.zeros(10, np.float32), transl.numpy(), fps, camera)


def reprojection_error_px(body, motion: SMPLMotion, keypoints: np.ndarray) -> float:
    """Mean confidence-weighted distance (pixels) between the motion's frame-0 joints and the keypoints."""
    joints_idx, targets, conf = _joint_targets(keypoints)
    with torch.no_grad():
        joints = body(torch.as_tensor(motion.global_orient[:1]), torch.as_tensor(motion.body_pose[:1]), None,
                      torch.as_tensor(motion.transl[:1])).joints[0]
    distance = (motion.camera.project(joints[joints_idx].float()) - targets).norm(dim=-1)
    return float((conf * distance).sum() / conf.sum())


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m comovi_core.estimate", description=__doc__.split("\n\n")[0])
    p.add_argument("keypoints", type=Path, help="OpenPose/DWPose JSON of the start image (COCO-18 body keypoints)")
    p.add_argument("--out", type=Path, required=True, help="where to write the one-frame motion (.npz)")
    p.add_argument("--person", type=int, default=0, help="which person of the JSON to fit")
    p.add_argument("--fov", type=float, default=50.0, help="vertical field of view of the start image, degrees")
    p.add_argument("--body-model", type=Path, help="SMPL file or folder; default: the stand-in mannequin (not SMPL)")
    p.add_argument("--fps", type=float, default=16.0, help="frame rate stored in the motion")
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> SMPLMotion:
    from .body.motion_file import check_motion_target, save_motion
    from .body.smpl import load_body_model

    check_motion_target(args.out, "--out file")
    keypoints, (height, width) = read_pose_json(args.keypoints, args.person)
    body = load_body_model(args.body_model)
    motion = estimate_start_pose(body, keypoints, height, width, args.fov, fps=args.fps)
    save_motion(args.out, motion)
    log.info("start pose fitted to %s (mean reprojection error %.1f px); wrote %s", args.keypoints,
             reprojection_error_px(body, motion, keypoints), args.out)
    return motion


def main(argv=None) -> int:
    return run_cli(parse_args, run, log, argv)


if __name__ == "__main__":
    sys.exit(main())
