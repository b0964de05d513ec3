"""Evaluation metrics: 3D motion against a reference, and 3D-2D consistency of a generated motion map.

Motion errors follow the usual human-mesh-recovery definitions, on root-relative 24 SMPL joints:
- ``mpjpe_mm``: mean per-joint position error after subtracting the pelvis (joint 0);
- ``pa_mpjpe_mm``: the same after a per-frame similarity (Procrustes) alignment;
- ``pve_mm``: mean per-vertex error, root-relative;
- ``accel_error_mm``: mean joint error of the second finite difference (mm / frame^2).

Consistency compares the motion map rendered from a SMPL motion with a motion map video (e.g. the
one the motion branch generated): silhouette IoU, part-label agreement and normal angle on the pixels
both cover. It is the check that the 3D head's motion and the 2D branch tell the same story.
"""

from __future__ import annotations

import torch

from ..body.camera import PinholeCamera
from ..errors import CoMoViError
from ..motion_map.decode import DecodedMotionMap, decode_motion_map


def procrustes_align(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(T, N, 3), (T, N, 3) -> ``pred`` moved by the similarity transform that best fits ``target`` per frame."""
    import roma  # on use: roma imports torch._dynamo (seconds) at import

    rotation, translation, scale = roma.rigid_points_registration(pred, target, compute_scaling=True)
    return scale[:, None, None] * pred @ rotation.transpose(-1, -2) + translation[:, None]


def motion_errors(
    pred_joints: torch.Tensor,
    gt_joints: torch.Tensor,
    pred_vertices: torch.Tensor | None = None,
    gt_vertices: torch.Tensor | None = None,
) -> dict[str, float]:
    """Joints (T, 24, 3) and optional vertices (T, V, 3) in metres -> errors in millimetres."""
    if pred_joints.shape != gt_joints.shape:
        raise CoMoViError(f"motions differ in shape: {tuple(pred_joints.shape)} vs {tuple(gt_joints.shape)}")
    pred_rel, gt_rel = pred_joints - pred_joints[:, :1], gt_joints - gt_joints[:, :1]
    out = {
        "mpjpe_mm": 1000 * float((pred_rel - gt_rel).norm(dim=-1).mean()),
        "pa_mpjpe_mm": 1000 * float((procrustes_align(pred_joints, gt_joints) - gt_joints).norm(dim=-1).mean()),
    }
    if pred_vertices is not None and gt_vertices is not None:
        pv, gv = pred_vertices - pred_joints[:, :1], gt_vertices - gt_joints[:, :1]
        out["pve_mm"] = 1000 * float((pv - gv).norm(dim=-1).mean())
    if pred_joints.shape[0] >= 3:

        def accel(j):
            return j[2:] - 2 * j[1:-1] + j[:-2]

        out["accel_error_mm"] = 1000 * float((accel(pred_joints) - accel(gt_joints)).norm(dim=-1).mean())
    return out


def map_consistency(reference: DecodedMotionMap, other: DecodedMotionMap) -> dict[str, float]:
    """Silhouette IoU (mean over frames), part agreement and mean normal angle (degrees) where both cover."""
    if reference.mask.shape != other.mask.shape:
        raise CoMoViError(f"motion maps differ in size: {tuple(reference.mask.shape)} vs {tuple(other.mask.shape)}")
    both = reference.mask & other.mask
    union = (reference.mask | other.mask).flatten(1).sum(1)
    iou = both.flatten(1).sum(1) / union.clamp_min(1)
    iou = torch.where(union > 0, iou, torch.ones_like(iou))  # two empty frames agree
    if not both.any():
        return {"silhouette_iou": float(iou.mean()), "part_agreement": 0.0, "normal_error_deg": 180.0}
    cos = (reference.normal[both] * other.normal[both]).sum(-1).clamp(-1, 1)
    return {
        "silhouette_iou": float(iou.mean()),
        "part_agreement": float((reference.part[both] == other.part[both]).float().mean()),
        "normal_error_deg": float(torch.rad2deg(torch.acos(cos)).mean()),
    }


def decode_generated(images: torch.Tensor, camera: PinholeCamera, body_distance: float) -> DecodedMotionMap:
    """A generated (comovi_v1-shaded) motion-map video (T, H, W, 3) in [0, 1] -> per-pixel part and normal."""
    return decode_motion_map(images, "comovi_v1", camera, body_distance)
