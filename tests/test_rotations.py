"""Rotation helpers: round trips and the PyTorch3D 6D convention (first two rows)."""

import math

import torch

from comovi_core.body.rotations import (
    axis_angle_to_matrix,
    axis_angle_to_rot6d,
    matrix_to_axis_angle,
    matrix_to_rot6d,
    nearest_axis_angle,
    rot6d_to_axis_angle,
    rot6d_to_matrix,
)


def test_known_rotation():
    r = axis_angle_to_matrix(torch.tensor([0.0, 0.0, math.pi / 2], dtype=torch.float64))
    torch.testing.assert_close(
        r, torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    )
    torch.testing.assert_close(matrix_to_rot6d(r), torch.tensor([0.0, -1.0, 0.0, 1.0, 0.0, 0.0], dtype=torch.float64))


def test_round_trips():
    g = torch.Generator().manual_seed(1)
    rotvec = torch.randn(500, 3, generator=g, dtype=torch.float64)
    rotvec = rotvec / rotvec.norm(dim=-1, keepdim=True) * torch.rand(500, 1, generator=g, dtype=torch.float64) * 3.1
    torch.testing.assert_close(matrix_to_axis_angle(axis_angle_to_matrix(rotvec)), rotvec)
    torch.testing.assert_close(rot6d_to_axis_angle(axis_angle_to_rot6d(rotvec)), rotvec)


def test_6d_decoding_orthonormalises_rows():
    d6 = torch.tensor([2.0, 0.0, 0.0, 1.0, 3.0, 0.0])  # rows (2,0,0) and (1,3,0)
    m = rot6d_to_matrix(d6)
    torch.testing.assert_close(m, torch.eye(3))
    noisy = axis_angle_to_rot6d(torch.tensor([[0.3, -0.2, 0.9]])) + 0.01
    m = rot6d_to_matrix(noisy)
    torch.testing.assert_close(m @ m.transpose(-1, -2), torch.eye(3).expand(1, 3, 3), atol=1e-6, rtol=0)
    torch.testing.assert_close(torch.linalg.det(m), torch.ones(1))


def test_nearest_axis_angle_keeps_the_rotation_and_removes_whole_turns():
    """A half turn about x is (pi, 0, 0) and (-pi, 0, 0) alike: next to (pi, 0, 0), the estimator's
    (-pi + 0.01, 0, 0) becomes (pi + 0.01, 0, 0) - 0.01 rad away, not 2 pi - 0.01 - and stays the same rotation."""
    torch.manual_seed(0)
    rotvec = torch.cat([torch.tensor([[-math.pi + 0.01, 0.0, 0.0], [0.0, 0.0, 0.0]]), torch.randn(50, 3)])
    reference = torch.cat([torch.tensor([[math.pi, 0.0, 0.0], [0.1, 0.0, 0.0]]), torch.randn(50, 3)])
    nearest = nearest_axis_angle(rotvec, reference)
    torch.testing.assert_close(nearest[0], torch.tensor([math.pi + 0.01, 0.0, 0.0]))
    torch.testing.assert_close(nearest[1], torch.zeros(3))  # no rotation stays no rotation
    torch.testing.assert_close(axis_angle_to_matrix(nearest), axis_angle_to_matrix(rotvec), atol=2e-6, rtol=0)
    # never farther from the reference than the input
    assert bool(((nearest - reference).norm(dim=-1) <= (rotvec - reference).norm(dim=-1) + 1e-6).all())
