"""BVH skeleton animation of a SMPL motion.

The 24 SMPL joints with offsets from the shaped rest skeleton (betas), root channels
``Xposition Yposition Zposition Zrotation Xrotation Yrotation`` (the root joint's world position, zero root OFFSET)
and ``Z X Y`` rotations (degrees, intrinsic) for the others, one frame per motion frame at the motion's fps, in the
y-up world of ``skeleton.CAMERA_TO_WORLD``. Units: metres.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..body.motion_file import SMPLMotion
from ..body.parts import SMPL_JOINT_NAMES
from ..body.smpl import BodyModel
from ..files.atomic import atomic_path
from .skeleton import CAMERA_TO_WORLD, rest_joints


def bvh_text(model: BodyModel, motion: SMPLMotion) -> str:
    """The BVH file for ``motion`` on ``model``'s skeleton."""
    rest = rest_joints(model, motion.betas)
    parents = [-1] + model.smpl.parents.tolist()[1:]
    children = {j: [c for c in range(24) if parents[c] == j] for j in range(24)}
    lines = ["HIERARCHY"]

    def joint(j: int, depth: int) -> None:
        pad = "  " * depth
        offset = rest[j] - rest[parents[j]] if parents[j] >= 0 else np.zeros(3)  # the root moves by its channels
        lines.append(f"{pad}{'ROOT' if depth == 0 else 'JOINT'} {SMPL_JOINT_NAMES[j]}")
        lines.append(f"{pad}{{")
        lines.append(f"{pad}  OFFSET {offset[0]:.6f} {offset[1]:.6f} {offset[2]:.6f}")
        channels = (
            "6 Xposition Yposition Zposition Zrotation Xrotation Yrotation"
            if depth == 0
            else "3 Zrotation Xrotation Yrotation"
        )
        lines.append(f"{pad}  CHANNELS {channels}")
        for c in children[j]:
            joint(c, depth + 1)
        if not children[j]:
            lines.extend(
                [f"{pad}  End Site", f"{pad}  {{", f"{pad}    OFFSET 0.000000 0.050000 0.000000", f"{pad}  }}"]
            )
        lines.append(f"{pad}}}")

    joint(0, 0)
    frames = motion.num_frames
    poses = motion.full_pose.reshape(frames, 24, 3).astype(np.float64)
    from scipy.spatial.transform import Rotation  # on use: scipy costs ~0.4 s at ComfyUI start-up

    local = Rotation.from_rotvec(poses.reshape(-1, 3)).as_matrix().reshape(frames, 24, 3, 3)
    local[:, 0] = CAMERA_TO_WORLD @ local[:, 0]  # root orientation in the y-up world
    # SMPL puts the root joint at rest[0] + transl (rotation about the rest root joint)
    root = (rest[0] + motion.transl.astype(np.float64)) @ CAMERA_TO_WORLD.T
    euler = Rotation.from_matrix(local.reshape(-1, 3, 3)).as_euler("ZXY", degrees=True).reshape(frames, 24, 3)
    lines += ["MOTION", f"Frames: {frames}", f"Frame Time: {1.0 / motion.fps:.6f}"]
    order = [j for j in _depth_first(children)]
    for f in range(frames):
        values = list(root[f]) + [v for j in order for v in euler[f, j]]
        lines.append(" ".join(f"{v:.6f}" for v in values))
    return "\n".join(lines) + "\n"


def _depth_first(children: dict) -> list[int]:
    out, stack = [], [0]
    while stack:
        j = stack.pop()
        out.append(j)
        stack.extend(reversed(children[j]))
    return out


def write_bvh(path: str | Path, model: BodyModel, motion: SMPLMotion) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(bvh_text(model, motion))
    return path
