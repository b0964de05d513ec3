"""How well a start-pose estimate lies on the person: the measurement behind the estimator's acceptance.

On the stand-in body with a known pose, shape and camera (nothing here needs real weights): an HMR-like
start (the truth perturbed by ``perturb``: a rotation of ``joint_deg`` about a random axis at every joint, the
global orientation included, betas + ``betas_noise`` x N(0, 1), the translation scaled by ``depth_scale``), the
refinement toward keypoints projected from the truth, and today's keypoint-only fit from the rest pose, each
scored by root-aligned MPJPE and by silhouette IoU of its rendered body against the truth's render.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..body.camera import PinholeCamera
from ..body.rotations import axis_angle_to_matrix, matrix_to_axis_angle
from ..conditions.keypoints import BODY_KEYPOINTS, joint_keypoints
from ..motion_map.render import render_motion_map
from ..recovery.estimate import estimate_start_pose, refine_to_keypoints
from .metrics import motion_errors


def perturb(
    orient, pose, betas, transl, seed: int, joint_deg: float = 15.0, betas_noise: float = 0.1, depth_scale: float = 1.2
):
    """An HMR-like error on (orient (3,), pose (69,), betas (10,), transl (3,)) -> the same four, perturbed."""
    g = torch.Generator().manual_seed(seed)
    rots = torch.cat([orient.reshape(1, 3), pose.reshape(23, 3)]).double()
    axes = torch.nn.functional.normalize(torch.randn(24, 3, generator=g, dtype=torch.float64), dim=-1)
    noisy = axis_angle_to_matrix(axes * math.radians(joint_deg)) @ axis_angle_to_matrix(rots)
    aa = matrix_to_axis_angle(noisy).float()
    return aa[0], aa[1:].reshape(69), betas + betas_noise * torch.randn(10, generator=g), transl * depth_scale


def keypoints_of(body, orient, pose, betas, transl, camera: PinholeCamera) -> np.ndarray:
    """COCO-18 keypoints (18, 3) projected from the body's joints (confidence 1 for the 13 a skeleton gives)."""
    with torch.no_grad():
        joints = body(orient[None], pose[None], betas, transl[None]).joints[0]
    keypoints = np.zeros((18, 3), np.float32)
    keypoints[list(BODY_KEYPOINTS), :2] = camera.project(joint_keypoints(joints)).numpy()
    keypoints[list(BODY_KEYPOINTS), 2] = 1.0
    return keypoints


def _score(body, params, truth_out, truth_mask, camera: PinholeCamera) -> dict[str, float]:
    orient, pose, betas, transl = (torch.as_tensor(p, dtype=torch.float32) for p in params)
    with torch.no_grad():
        out = body(orient.reshape(1, 3), pose.reshape(1, 69), betas.reshape(10), transl.reshape(1, 3))
    mask = render_motion_map(out.vertices, body.faces, body.part_ids, camera, backend="torch").mask[0]
    iou = float((mask & truth_mask).sum()) / max(1, int((mask | truth_mask).sum()))
    errors = motion_errors(out.joints, truth_out.joints)
    return {"mpjpe_mm": errors["mpjpe_mm"], "pa_mpjpe_mm": errors["pa_mpjpe_mm"], "iou": iou}


def refinement_trial(
    body, orient, pose, betas, transl, camera: PinholeCamera, seed: int, render_scale: float = 0.5
) -> dict[str, dict[str, float]]:
    """-> {"start": scores, "refined": scores, "keypoint_fit": scores}; scores: mpjpe_mm, pa_mpjpe_mm, iou,
    transl_error_m. Silhouettes are drawn at ``render_scale`` of the camera's size (IoU barely changes)."""
    small = camera.resized(round(camera.height * render_scale), round(camera.width * render_scale))
    with torch.no_grad():
        truth_out = body(orient[None], pose[None], betas, transl[None])
    truth_mask = render_motion_map(truth_out.vertices, body.faces, body.part_ids, small, backend="torch").mask[0]
    keypoints = keypoints_of(body, orient, pose, betas, transl, camera)
    start = perturb(orient, pose, betas, transl, seed)
    refined = refine_to_keypoints(body, camera, start, keypoints)
    fit = estimate_start_pose(body, keypoints, camera.height, camera.width)
    fitted = (fit.global_orient[0], fit.body_pose[0], fit.betas, fit.transl[0])
    result = {}
    for name, params in (("start", start), ("refined", refined), ("keypoint_fit", fitted)):
        scores = _score(body, params, truth_out, truth_mask, small)
        scores["transl_error_m"] = float((torch.as_tensor(params[3]).reshape(3) - transl).norm())
        result[name] = scores
    return result
