"""What every export shares: the y-up world the files are written in (``body.world.CAMERA_TO_WORLD``), the
shaped rest skeleton, and the clip options. Units: metres.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..body.motion_file import SMPLMotion
from ..body.smpl import BodyModel
from ..body.world import CAMERA_TO_WORLD, WorldMotion, in_place, motion_to_world, on_ground, resample, rest_joints
from ..errors import CoMoViError
from ..retarget.animation import SkeletonAnimation
from ..retarget.mapping import to_skeleton
from ..retarget.skeletons import EXPORT_SKELETONS, SKELETONS

__all__ = ["CAMERA_TO_WORLD", "ExportOptions", "rest_joints"]


@dataclass(frozen=True)
class ExportOptions:
    """How a motion is written (the command's and the node's options)."""

    skeleton: str = "smpl"  # smpl, mixamo, ue5 or vrm (retarget.skeletons.EXPORT_SKELETONS)
    in_place: bool = False  # remove the horizontal root motion (the pelvis stays over the origin)
    ground: bool = False  # move the clip up or down so its lowest foot vertex is at y = 0
    fps: float = 0.0  # resample to this frame rate; 0 keeps the motion's

    def __post_init__(self) -> None:
        if self.skeleton not in EXPORT_SKELETONS:
            raise CoMoViError(f"skeleton must be one of {', '.join(EXPORT_SKELETONS)}, got {self.skeleton!r}")
        if not np.isfinite(self.fps) or self.fps < 0:
            raise CoMoViError(f"fps must be 0 (keep the motion's) or a positive frame rate, got {self.fps}")


def export_world(model: BodyModel, motion: SMPLMotion, options: ExportOptions) -> WorldMotion:
    """``motion`` in the y-up world with the clip options applied: resampled first, then in place, then grounded."""
    world = motion_to_world(model, motion)
    if options.fps:
        world = resample(world, options.fps)
    if options.in_place:
        world = in_place(model, world)
    if options.ground:
        world = on_ground(model, world)
    return world


def export_animation(model: BodyModel, motion: SMPLMotion, options: ExportOptions) -> SkeletonAnimation:
    """The skeleton animation the BVH and glTF writers write for ``motion`` with ``options``."""
    return to_skeleton(model, export_world(model, motion, options), SKELETONS[options.skeleton])
