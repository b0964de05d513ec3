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
