"""Priors of the motion fit (``comovi_core.recovery.fitting``): temporal smoothness, joint limits and stillness.

Smoothness penalises second differences of the pose over frames (jitter), not motion itself. Its
weight matters: at a low frame rate a real motion has large second differences, and a strong prior
then flattens it, so the default weight is small (docs/fitting.md, "Why it is built this way").

Joint limits keep each frame a pose a body can make, whatever the map says: elbows and knees are
hinges (they bend one way about one axis, as SMPLify's bending prior has it in SMPL's axis-angle
convention, and barely rotate about the other two), and no joint rotates further than its range from
the rest pose. The hinge axes matter for the fit: a limb's twist about its own axis is nearly invisible
in a motion map (a twisted cylinder draws the same), so without them a fit can trade a twisted shoulder
for an elbow bent sideways.

Stillness is a weak pull of every joint toward the start pose. Where the map shows a rotation it is
outweighed; where it cannot (twists), it keeps the joint where it started instead of letting the
twist drift along the arm (shoulder -2 rad, elbow +1, wrist +1 draws like no twist at all). The pull is
0.01 per squared radian: a weaker one lets the drift stay.
"""

from __future__ import annotations

import math

import torch

# (SMPL joint, axis, low, high): range of one axis-angle component of a hinge joint, radians
HINGES = (
    (4, 0, 0.0, math.inf),
    (5, 0, 0.0, math.inf),  # knees flex about x, forward only
    *((knee, axis, -0.2, 0.2) for knee in (4, 5) for axis in (1, 2)),  # and barely turn or tilt
    (18, 1, -math.inf, 0.0),
    (19, 1, 0.0, math.inf),  # elbows flex about y (left negative, right positive)
    *((elbow, 0, -1.0, 1.0) for elbow in (18, 19)),  # the forearm twists about x (pronation), within a range
    *((elbow, 2, -0.3, 0.3) for elbow in (18, 19)),  # and an elbow does not bend sideways
)
# largest rotation from the rest pose, radians, per SMPL joint 1..23 (generous: a limit, not a pose prior)
MAX_ANGLE = {
    **dict.fromkeys((1, 2), 2.4),  # hips
    **dict.fromkeys((4, 5, 18, 19), 2.8),  # knees, elbows
    **dict.fromkeys((7, 8, 10, 11), 1.2),  # ankles, feet
    **dict.fromkeys((3, 6, 9), 1.0),  # spine
    12: 1.2,
    15: 1.2,  # neck, head
    **dict.fromkeys((13, 14), 1.0),  # collars
    **dict.fromkeys((16, 17), math.pi),  # shoulders
    **dict.fromkeys((20, 21), 1.8),  # wrists
    **dict.fromkeys((22, 23), 1.0),  # hands
}
_MAX = torch.tensor([MAX_ANGLE[j] for j in range(1, 24)])


def acceleration(x: torch.Tensor) -> torch.Tensor:
    """(..., T, D) -> (..., T-2, D) second differences over frames (smooth, without pulling toward stillness)."""
    return x[..., 2:, :] - 2 * x[..., 1:-1, :] + x[..., :-2, :]


def smoothness(global_orient: torch.Tensor, body_pose: torch.Tensor, transl: torch.Tensor) -> torch.Tensor:
    """Temporal smoothness of global_orient (..., T, 3), body_pose (..., T, 69), transl (..., T, 3): mean squared
    second differences, those of transl (metres) weighted 10x those of the rotations (radians); 0 for T < 3.
    Leading dimensions (e.g. candidate poses) are kept: (...,)."""
    if global_orient.shape[-2] < 3:
        return global_orient.new_zeros(global_orient.shape[:-2])
    squared = (acceleration(x).square().sum(-1).mean(-1) for x in (body_pose, global_orient, transl))
    return sum(weight * term for weight, term in zip((1.0, 1.0, 10.0), squared))


def joint_limits(body_pose: torch.Tensor) -> torch.Tensor:
    """(T, 69) axis-angle body pose -> (T,) squared radians beyond the limits (0 for a pose a body can make)."""
    pose = body_pose.unflatten(-1, (23, 3))
    over = torch.relu(pose.norm(dim=-1) - _MAX.to(pose)).square().sum(-1)
    for joint, axis, low, high in HINGES:
        value = pose[..., joint - 1, axis]
        over = over + torch.relu(low - value).square() + torch.relu(value - high).square()
    return over


def stillness(body_pose: torch.Tensor, start_pose: torch.Tensor) -> torch.Tensor:
    """(T, 69) body pose and the start pose (69,) or (T, 69) -> (T,) squared radians away from the start."""
    return (body_pose - start_pose).square().sum(-1)
