"""Depth-mirrored limbs: the other answer a motion map nearly allows, tried while tracking (``fitting._track``).

A limb that swings toward the camera draws almost the same silhouette as one that swings away by the same
angle; only the shading of its normals tells them apart, and near the rest pose (where tracking starts)
that cue is weak, so a frame-by-frame fit can commit to the mirror image and keep it. ``mirrored_limb`` reflects both
segments of an arm or a leg across the plane through its root joint normal to the view ray, so the joints
stay near their pixels while their depths swap sides; the tracker refines that candidate and the
current pose alike for a few steps and keeps the cheaper one.
"""

from __future__ import annotations

import torch

from ..body.rotations import axis_angle_to_matrix, matrix_to_axis_angle

# (root, middle, end) SMPL joints of each limb: shoulder-elbow-wrist, hip-knee-ankle
LIMBS = ((16, 18, 20), (17, 19, 21), (1, 4, 7), (2, 5, 8))


def global_rotations(parents: list[int], pose: torch.Tensor) -> torch.Tensor:
    """(72,) axis-angle of the 24 joints (root first) -> (24, 3, 3) rotations in the camera frame."""
    local = axis_angle_to_matrix(pose.reshape(24, 3))
    chain = [local[0]]
    for joint in range(1, 24):
        chain.append(chain[parents[joint]] @ local[joint])
    return torch.stack(chain)


def _reflection_rotation(direction: torch.Tensor, ray: torch.Tensor) -> torch.Tensor:
    """The rotation taking ``direction`` (3,) to its mirror image across the plane normal to ``ray`` (unit)."""
    mirrored = direction - 2 * (direction @ ray) * ray
    axis = torch.linalg.cross(direction, mirrored)
    if float(axis.norm()) < 1e-8:  # in the plane already (or along the ray): nothing to mirror
        return torch.eye(3, dtype=direction.dtype, device=direction.device)
    cosine = (direction @ mirrored) / (direction.norm() * mirrored.norm())
    return axis_angle_to_matrix((axis / axis.norm() * torch.acos(cosine.clamp(-1, 1)))[None])[0]


def mirrored_limb(
    parents: list[int], joints: torch.Tensor, q: torch.Tensor, limb: tuple[int, int, int]
) -> torch.Tensor:
    """q (75,) pose (orient, body pose, transl) with joints (24, 3) in camera space -> q with ``limb``'s two
    segments mirrored in depth about its root joint (the rest of the body unchanged)."""
    root, middle, end = limb
    rotations = global_rotations(parents, q[:72])
    ray = joints[root] / joints[root].norm()
    root_rotation = _reflection_rotation(joints[middle] - joints[root], ray) @ rotations[root]
    middle_rotation = _reflection_rotation(joints[end] - joints[middle], ray) @ rotations[middle]
    out = q.clone()
    out[3 * root : 3 * root + 3] = matrix_to_axis_angle((rotations[parents[root]].T @ root_rotation)[None])[0]
    out[3 * middle : 3 * middle + 3] = matrix_to_axis_angle((root_rotation.T @ middle_rotation)[None])[0]
    return out
