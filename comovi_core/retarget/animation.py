"""A skeleton animation: what the BVH and glTF writers take and what a BVH file reads into.

Conventions (those of BVH): at rest every bone's frame is the world's (no bone axes), so the rest pose is given
by the ``offsets`` alone. A bone's world rotation is its parent's times its local rotation, and its world position
is its parent's plus the parent's world rotation times its offset. The root's world position is
``root_position``. Units: metres for what we write; a file read keeps its own units.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class SkeletonAnimation:
    names: list[str]  # (J,) bone names, parents before children
    parents: list[int]  # (J,) parent index, -1 for the root (index 0)
    offsets: np.ndarray  # (J, 3) rest offset from the parent (the root's: its rest position)
    rotations: np.ndarray  # (T, J, 3, 3) local rotations relative to the rest pose
    root_position: np.ndarray  # (T, 3) the root bone's world position
    fps: float
    end_sites: np.ndarray | None = None  # (J, 3) End Site offset of each leaf bone (BVH); zeros elsewhere
    translations: np.ndarray | None = None  # (T, J, 3) per-frame offsets of bones with position channels (files)
    joints: list[int | None] | None = None  # (J,) the SMPL joint each bone carries (retargeted exports)
    bind: np.ndarray | None = None  # (J, 3, 3) the SMPL T-pose -> bone rest rotation of each bone (retargeted)

    @property
    def num_frames(self) -> int:
        return self.rotations.shape[0]

    def children(self, bone: int) -> list[int]:
        return [c for c, p in enumerate(self.parents) if p == bone]

    def depth_first(self) -> list[int]:
        """Bone indices in the order a BVH file lists them (each bone, then its children's subtrees)."""
        out, stack = [], [0]
        while stack:
            bone = stack.pop()
            out.append(bone)
            stack.extend(reversed(self.children(bone)))
        return out


def forward_kinematics(animation: SkeletonAnimation) -> tuple[np.ndarray, np.ndarray]:
    """World rotations (T, J, 3, 3) and world positions (T, J, 3) of every bone in every frame."""
    frames, count = animation.num_frames, len(animation.names)
    rotations = np.zeros((frames, count, 3, 3))
    positions = np.zeros((frames, count, 3))
    for b, p in enumerate(animation.parents):
        offset = animation.offsets[b] if animation.translations is None else animation.translations[:, b]
        if p < 0:
            rotations[:, b] = animation.rotations[:, b]
            positions[:, b] = animation.root_position
        else:
            rotations[:, b] = rotations[:, p] @ animation.rotations[:, b]
            offset = np.broadcast_to(offset, (frames, 3))
            positions[:, b] = positions[:, p] + np.einsum("tij,tj->ti", rotations[:, p], offset)
    return rotations, positions


def rest_positions(animation: SkeletonAnimation) -> np.ndarray:
    """(J, 3) bone positions in the rest pose (all rotations zero; the root at its offset)."""
    out = np.zeros((len(animation.names), 3))
    for b, p in enumerate(animation.parents):
        out[b] = animation.offsets[b] if p < 0 else out[p] + animation.offsets[b]
    return out
