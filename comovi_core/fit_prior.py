"""Priors of the motion fit (``comovi_core.fitting``): temporal smoothness and joint limits.

Smoothness penalises second differences of the pose over frames (jitter), not motion itself. Its
weight matters: at a low frame rate a real motion has large second differences, and a strong prior
then flattens it (measured on benchmarks/bench_fit_motion.py ``demo``, 9 frames: weight 1.0 left the
fit at 0.86 of holding the start pose, 0.05 at 0.34), so the default weight is small.

Joint limits keep each frame a pose a body can make, whatever the map says: elbows and knees do not
bend backwards (the sign convention of SMPL's axis-angle pose, as SMPLify's bending prior uses), and no
joint rotates further than its range from the rest pose.
"""

from __future__ import annotations

import math

import torch

# (SMPL joint, axis, sign): sign * pose[joint, axis] must stay <= 0 (hinges bend one way only)
HINGES = ((18, 1, 1.0), (19, 1, -1.0), (4, 0, -1.0), (5, 0, -1.0))  # left/right elbow (y), left/right knee (x)
# largest rotation from the rest pose, radians, per SMPL joint 1..23 (generous: a limit, not a pose prior)
MAX_ANGLE = {
    **dict.fromkeys((1, 2), 2.4),  # hips
    **dict.fromkeys((4, 5, 18, 19), 2.8),  # knees, elbows
    **dict.fromkeys((7, 8, 10, 11), 1.2),  # ankles, feet
    **dict.fromkeys((3, 6, 9), 1.0),  # spine
    12: 1.2, 15: 1.2,  # neck, head
    **dict.fromkeys((13, 14), 1.0),  # collars
    **dict.fromkeys((16, 17), math.pi),  # shoulders
    **dict.fromkeys((20, 21), 1.8),  # wrists
    **dict.fromkeys((22, 23), 1.0),  # hands
}
_MAX = torch.tensor([MAX_ANGLE[j] for j in range(1, 24)])
# knees and elbows are hinges: off their hinge axis (twist, sideways) they turn at most this far (radians)
HINGE_OFF_AXIS = 0.5


def acceleration(x: torch.Tensor) -> torch.Tensor:
    """(T, D) -> (T-2, D) second differences (smooth, without pulling toward stillness)."""
    return x[2:] - 2 * x[1:-1] + x[:-2]


def smoothness(global_orient: torch.Tensor, body_pose: torch.Tensor, transl: torch.Tensor) -> torch.Tensor:
    """Temporal smoothness of global_orient (T, 3), body_pose (T, 69), transl (T, 3): mean squared second
    differences, those of transl (metres) weighted 10x those of the rotations (radians); 0 for T < 3."""
    if global_orient.shape[0] < 3:
        return global_orient.new_zeros(())
    squared = (acceleration(x).square().sum(-1).mean() for x in (body_pose, global_orient, transl))
    return sum(weight * term for weight, term in zip((1.0, 1.0, 10.0), squared))


def joint_limits(body_pose: torch.Tensor, hinge_axes: bool = False) -> torch.Tensor:
    """(T, 69) axis-angle body pose -> (T,) squared radians beyond the limits (0 for a pose a body can make).

    ``hinge_axes``: also limit knees and elbows off their hinge axis (``HINGE_OFF_AXIS``): no sideways knee."""
    pose = body_pose.unflatten(-1, (23, 3))
    over = torch.relu(pose.norm(dim=-1) - _MAX.to(pose)).square().sum(-1)
    for joint, axis, sign in HINGES:
        over = over + torch.relu(sign * pose[..., joint - 1, axis]).square()
        if hinge_axes:
            off = [a for a in range(3) if a != axis]
            over = over + torch.relu(pose[..., joint - 1, off].abs() - HINGE_OFF_AXIS).square().sum(-1)
    return over
