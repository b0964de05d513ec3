"""SMPL motion in a y-up world, the frame every file format outside CoMoVi speaks (BVH, glTF, AMASS after turning
Z-up to y-up, Mixamo, Unreal, VRM).

``CAMERA_TO_WORLD`` turns the OpenCV camera frame of a motion file (y down, z forward) 180 degrees about x, so the
camera sits at the origin looking down -z, as Blender, Maya and Houdini expect. Units: metres.

A ``WorldMotion`` holds the same SMPL parameters as ``SMPLMotion`` but in such a world and with no camera:
world vertices = SMPL(global_orient, body_pose, betas) + transl. ``rigid_transform`` moves a body by a rotation
and an offset; SMPL turns the body about its root joint, not the origin, so ``transl`` changes with the shape.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from ..errors import CoMoViError
from .smpl import BodyModel

CAMERA_TO_WORLD = np.diag([1.0, -1.0, -1.0])  # 180 degrees about x: OpenCV camera -> y-up world


@dataclass
class WorldMotion:
    global_orient: np.ndarray  # (T, 3) axis-angle of the root in the world
    body_pose: np.ndarray  # (T, 69) axis-angle of the 23 body joints (SMPL joint order)
    betas: np.ndarray  # (10,)
    transl: np.ndarray  # (T, 3) metres; world vertices = SMPL(global_orient, body_pose, betas) + transl
    fps: float
    gender: str = "neutral"
    source: str = ""  # where it came from (a file name), for messages

    def __post_init__(self) -> None:
        what = f" in {self.source}" if self.source else ""
        self.global_orient = _finite(self.global_orient, "global_orient", what)
        t = self.global_orient.shape[0] if self.global_orient.ndim == 2 else 0
        if self.global_orient.ndim != 2 or self.global_orient.shape[1] != 3 or t < 1:
            raise CoMoViError(f"global_orient{what} must be (T, 3) with T >= 1 frames, got {self.global_orient.shape}")
        self.body_pose = _finite(self.body_pose, "body_pose", what)
        self.transl = _finite(self.transl, "transl", what)
        self.betas = _finite(self.betas, "betas", what)
        for name, arr, shape in (("body_pose", self.body_pose, (t, 69)), ("transl", self.transl, (t, 3))):
            if arr.shape != shape:
                raise CoMoViError(f"{name}{what} must have shape {shape}, got {arr.shape}")
        if self.betas.shape != (10,):
            raise CoMoViError(f"betas{what} must have shape (10,), got {self.betas.shape}")
        if not np.isfinite(self.fps) or self.fps <= 0:
            raise CoMoViError(f"fps{what} must be a positive number, got {self.fps}")
        self.fps = float(self.fps)

    @property
    def num_frames(self) -> int:
        return self.global_orient.shape[0]


def _finite(value, name: str, what: str) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if not np.isfinite(arr).all():
        idx = np.argwhere(~np.isfinite(arr))[0]
        raise CoMoViError(f"{name}{what} contains NaN or infinite values (first at index {tuple(int(i) for i in idx)})")
    return arr


def rest_joints(model: BodyModel, betas: np.ndarray) -> np.ndarray:
    """(24, 3) joints of the shaped body in the T-pose, SMPL model space (y up)."""
    with torch.no_grad():
        out = model(torch.zeros(1, 3), torch.zeros(1, 69), torch.as_tensor(np.asarray(betas), dtype=torch.float32))
    return out.joints[0].double().numpy()


def root_joint(model: BodyModel, betas: np.ndarray) -> np.ndarray:
    """(3,) the root (pelvis) joint of the shaped body in the T-pose, model space: SMPL turns the body about it."""
    return rest_joints(model, betas)[0]


def rigid_transform(
    model: BodyModel,
    global_orient: np.ndarray,
    transl: np.ndarray,
    betas: np.ndarray,
    rotation: np.ndarray,
    offset: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(global_orient, transl)`` of the body moved by x -> rotation @ x + offset (rotation (3, 3), offset (3,)).

    With the root joint j: v = R_root (v0 - j) + j + transl, so the moved body has root rotation
    rotation @ R_root and transl' = rotation @ (j + transl) + offset - j."""
    from scipy.spatial.transform import Rotation  # on use: scipy costs ~0.4 s at ComfyUI start-up

    rotation = np.asarray(rotation, dtype=np.float64)
    offset = np.zeros(3) if offset is None else np.asarray(offset, dtype=np.float64)
    j = root_joint(model, betas)
    root = Rotation.from_matrix(rotation) * Rotation.from_rotvec(np.asarray(global_orient, dtype=np.float64))
    moved = (j + np.asarray(transl, dtype=np.float64)) @ rotation.T + offset - j
    return root.as_rotvec(), moved


def motion_to_world(model: BodyModel, motion) -> WorldMotion:
    """A camera-frame ``SMPLMotion`` in the y-up world (camera at the origin looking down -z)."""
    orient, transl = rigid_transform(model, motion.global_orient, motion.transl, motion.betas, CAMERA_TO_WORLD)
    return WorldMotion(orient, motion.body_pose, motion.betas, transl, motion.fps, motion.gender)


def resample(world: WorldMotion, fps: float) -> WorldMotion:
    """``world`` at ``fps`` frames per second over the same duration: every joint rotation is slerped and ``transl``
    interpolated linearly between the two nearest source frames (the first frame is kept; the last new frame is the
    last one at or before the clip's end)."""
    from scipy.spatial.transform import Rotation  # on use: scipy costs ~0.4 s at ComfyUI start-up

    if not np.isfinite(fps) or fps <= 0:
        raise CoMoViError(f"the fps to resample to must be a positive number, got {fps}")
    if fps == world.fps:
        return world
    count = world.num_frames
    times = np.arange(int(np.floor((count - 1) * fps / world.fps + 1e-9)) + 1) * (world.fps / fps)  # source frames
    lower = np.minimum(np.floor(times).astype(int), count - 1)
    upper = np.minimum(lower + 1, count - 1)
    w = (times - lower)[:, None]
    poses = np.concatenate([world.global_orient, world.body_pose], axis=1).reshape(count, 24, 3)
    quats = Rotation.from_rotvec(poses.reshape(-1, 3)).as_quat().reshape(count, 24, 4)
    a, b = quats[lower], quats[upper]
    b = np.where((a * b).sum(-1, keepdims=True) < 0, -b, b)  # the short way round
    dot = np.clip((a * b).sum(-1, keepdims=True), -1.0, 1.0)
    angle = np.arccos(dot)
    small = angle < 1e-6
    sin = np.where(small, 1.0, np.sin(angle))
    t = w[:, :, None] * np.ones_like(angle)
    wa = np.where(small, 1 - t, np.sin((1 - t) * angle) / sin)
    wb = np.where(small, t, np.sin(t * angle) / sin)
    out = Rotation.from_quat((wa * a + wb * b).reshape(-1, 4)).as_rotvec().reshape(len(times), 72)
    transl = world.transl[lower] * (1 - w) + world.transl[upper] * w
    return replace(world, global_orient=out[:, :3], body_pose=out[:, 3:], transl=transl, fps=fps)


FOOT_PARTS = ("leftFoot", "leftToeBase", "rightFoot", "rightToeBase")


def in_place(model: BodyModel, world: WorldMotion) -> WorldMotion:
    """``world`` with the horizontal root motion removed: the root joint stays over the origin (x = z = 0) in
    every frame; its height, the body's turn and the pose are kept."""
    j = root_joint(model, world.betas)
    transl = world.transl.copy()
    transl[:, [0, 2]] = -j[[0, 2]]
    return replace(world, transl=transl)


def on_ground(model: BodyModel, world: WorldMotion) -> WorldMotion:
    """``world`` moved up or down so that its lowest foot vertex over the whole clip is at y = 0."""
    from .parts import PART_NAMES

    feet = torch.isin(model.part_ids, torch.tensor([PART_NAMES.index(p) for p in FOOT_PARTS]))
    if not bool(feet.any()):
        raise CoMoViError(f"the body model {model.source} has no foot vertices to stand on")
    with torch.no_grad():
        out = model(
            torch.as_tensor(world.global_orient, dtype=torch.float32),
            torch.as_tensor(world.body_pose, dtype=torch.float32),
            torch.as_tensor(world.betas, dtype=torch.float32),
        )
    lowest = (out.vertices[:, feet, 1].double().numpy() + world.transl[:, 1:2]).min()
    transl = world.transl - np.array([0.0, lowest, 0.0])
    return replace(world, transl=transl)
