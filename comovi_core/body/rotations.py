"""Rotation conversions, built on ``roma``.

6D follows PyTorch3D's ``matrix_to_rotation_6d`` (the release's choice): the first two ROWS of the
rotation matrix, flattened; decoding is Gram-Schmidt on those rows.
"""

from __future__ import annotations

import torch


def axis_angle_to_matrix(rotvec: torch.Tensor) -> torch.Tensor:
    """(..., 3) axis-angle -> (..., 3, 3)."""
    import roma  # on use: roma imports torch._dynamo (seconds) at import

    return roma.rotvec_to_rotmat(rotvec)


def matrix_to_axis_angle(matrix: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) -> (..., 3) axis-angle with angle in [0, pi]."""
    import roma

    return roma.rotmat_to_rotvec(matrix)


def matrix_to_rot6d(matrix: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) -> (..., 6): first two rows."""
    return matrix[..., :2, :].flatten(-2)


def rot6d_to_matrix(rot6d: torch.Tensor) -> torch.Tensor:
    """(..., 6) -> (..., 3, 3); the nearest rotation whose first two rows span the input's."""
    import roma

    rows = rot6d.unflatten(-1, (2, 3))  # (..., 2, 3)
    return roma.special_gramschmidt(rows.transpose(-1, -2)).transpose(-1, -2)


def axis_angle_to_rot6d(rotvec: torch.Tensor) -> torch.Tensor:
    return matrix_to_rot6d(axis_angle_to_matrix(rotvec))


def rot6d_to_axis_angle(rot6d: torch.Tensor) -> torch.Tensor:
    return matrix_to_axis_angle(rot6d_to_matrix(rot6d))


def nearest_axis_angle(rotvec: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """(..., 3) axis-angle -> the axis-angle of the same rotation nearest to ``reference`` (..., 3): the angle
    along the same axis shifted by a whole turn where that is closer (a pi turn about x is (pi, 0, 0) and
    (-pi, 0, 0) alike). Keeps a sequence of rotation vectors continuous, so that differences over time (a
    smoothness prior) measure motion, not the 2 pi jumps of the representation."""
    angle = rotvec.norm(dim=-1, keepdim=True)
    axis = rotvec / angle.clamp_min(1e-12)
    turns = torch.tensor([-1.0, 0.0, 1.0], dtype=rotvec.dtype, device=rotvec.device)  # (3,) whole turns
    candidates = axis[..., None, :] * (angle[..., None, :] + 2 * torch.pi * turns[:, None])  # (..., 3, 3)
    best = (candidates - reference[..., None, :]).norm(dim=-1).argmin(-1)  # (...,)
    return torch.gather(candidates, -2, best[..., None, None].expand(*best.shape, 1, 3))[..., 0, :]
