"""BVH skeleton animation of a SMPL motion, on SMPL's skeleton or a retargeted one (Mixamo, UE5, VRM).

Bones and offsets come from ``retarget.to_skeleton`` (the shaped rest skeleton of the body, in the target's rest
pose). The root has channels ``Xposition Yposition Zposition Zrotation Xrotation Yrotation`` (its world position,
zero root OFFSET) and every other bone ``Zrotation Xrotation Yrotation`` (degrees, intrinsic), one frame per motion
frame, in the y-up world of ``skeleton.CAMERA_TO_WORLD``. Units: metres.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..body.motion_file import SMPLMotion
from ..body.smpl import BodyModel
from ..files.atomic import atomic_path
from ..retarget.animation import SkeletonAnimation
from .skeleton import ExportOptions, export_animation

ROOT_CHANNELS = "6 Xposition Yposition Zposition Zrotation Xrotation Yrotation"
JOINT_CHANNELS = "3 Zrotation Xrotation Yrotation"


def animation_bvh(animation: SkeletonAnimation) -> str:
    """The BVH text of a skeleton animation (no per-bone position channels: ``translations`` must be None)."""
    from scipy.spatial.transform import Rotation  # on use: scipy costs ~0.4 s at ComfyUI start-up

    assert animation.translations is None, "BVH export writes rest offsets only"
    ends = np.zeros((len(animation.names), 3)) if animation.end_sites is None else animation.end_sites
    lines = ["HIERARCHY"]

    def bone(b: int, depth: int) -> None:
        pad = "  " * depth
        offset = np.zeros(3) if depth == 0 else animation.offsets[b]  # the root moves by its channels
        lines.append(f"{pad}{'ROOT' if depth == 0 else 'JOINT'} {animation.names[b]}")
        lines.append(f"{pad}{{")
        lines.append(f"{pad}  OFFSET {offset[0]:.6f} {offset[1]:.6f} {offset[2]:.6f}")
        lines.append(f"{pad}  CHANNELS {ROOT_CHANNELS if depth == 0 else JOINT_CHANNELS}")
        children = animation.children(b)
        for c in children:
            bone(c, depth + 1)
        if not children:
            e = ends[b]
            lines.extend([f"{pad}  End Site", f"{pad}  {{", f"{pad}    OFFSET {e[0]:.6f} {e[1]:.6f} {e[2]:.6f}"])
            lines.append(f"{pad}  }}")
        lines.append(f"{pad}}}")

    bone(0, 0)
    frames, count = animation.num_frames, len(animation.names)
    euler = Rotation.from_matrix(animation.rotations.reshape(-1, 3, 3)).as_euler("ZXY", degrees=True)
    euler = euler.reshape(frames, count, 3)
    lines += ["MOTION", f"Frames: {frames}", f"Frame Time: {1.0 / animation.fps:.6f}"]
    order = animation.depth_first()
    for f in range(frames):
        values = list(animation.root_position[f]) + [v for b in order for v in euler[f, b]]
        lines.append(" ".join(f"{v:.6f}" for v in values))
    return "\n".join(lines) + "\n"


def bvh_text(model: BodyModel, motion: SMPLMotion, options: ExportOptions | None = None) -> str:
    """The BVH file for ``motion`` on ``model``'s body, on the skeleton and with the clip options of ``options``."""
    return animation_bvh(export_animation(model, motion, options or ExportOptions()))


def write_bvh(path: str | Path, model: BodyModel, motion: SMPLMotion, options: ExportOptions | None = None) -> Path:
    path = Path(path)
    text = bvh_text(model, motion, options)
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path
