"""A world motion (mocap: no camera) placed in front of a pinhole camera, as the camera-frame ``SMPLMotion`` the
sampler follows.

Conventions (y-up world, metres): the camera stands ``distance`` in front of the body's start position (the root
joint in frame 0, measured horizontally along the way the body faces in frame 0), ``height`` above the ground
(y = 0; with ``ground`` the clip is first moved so that its lowest foot touches it), and looks horizontally at the
body. ``yaw`` (degrees) then turns the body about the vertical axis through its start position: 0 = the body faces
the camera; positive turns it to its own left (counter-clockwise seen from above), so at 90 it faces the image's
right edge and walks that way; 180 shows its back.
"""

from __future__ import annotations

import math

import numpy as np

from ..body.camera import PinholeCamera
from ..body.motion_file import SMPLMotion
from ..body.smpl import BodyModel
from ..body.world import CAMERA_TO_WORLD, WorldMotion, on_ground, resample, rigid_transform, root_joint
from ..errors import CoMoViError

MIN_DEPTH = 0.1  # metres: a root joint closer to the camera plane than this cannot be drawn


def facing(world: WorldMotion, frame: int = 0) -> np.ndarray:
    """(3,) the horizontal unit vector the body faces in ``frame`` (SMPL faces +z in its own frame); for a body
    lying face up or down, the way its head points."""
    from scipy.spatial.transform import Rotation  # on use: scipy costs ~0.4 s at ComfyUI start-up

    turn = Rotation.from_rotvec(world.global_orient[frame]).as_matrix()
    for axis in (turn[:, 2], turn[:, 1]):
        flat = np.array([axis[0], 0.0, axis[2]])
        if np.linalg.norm(flat) > 1e-3:
            return flat / np.linalg.norm(flat)
    raise CoMoViError(f"the body{_of(world)} has no horizontal facing direction in frame {frame}")


def view_transform(
    model: BodyModel, world: WorldMotion, *, distance: float, height: float, yaw: float
) -> tuple[np.ndarray, np.ndarray]:
    """``(rotation, offset)``: x_camera = rotation @ x_world + offset, the body's yaw turn included (see the module
    docstring); x_camera is in the OpenCV camera frame (x right, y down, z forward)."""
    if not (math.isfinite(distance) and distance > 0):
        raise CoMoViError(f"distance must be a positive number of metres, got {distance}")
    if not math.isfinite(height) or not math.isfinite(yaw):
        raise CoMoViError(f"height and yaw must be finite numbers, got {height} and {yaw}")
    start = root_joint(model, world.betas) + world.transl[0]  # the root joint in frame 0
    forward = facing(world)
    eye = np.array([start[0], height, start[2]]) + distance * forward
    up = np.array([0.0, 1.0, 0.0])
    camera = np.stack([np.cross(up, forward), up, forward], axis=1)  # columns: its right, up and back in the world
    c, s = math.cos(math.radians(yaw)), math.sin(math.radians(yaw))
    turn = np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])  # yaw about +y
    to_camera = CAMERA_TO_WORLD.T @ camera.T  # world -> OpenCV camera axes
    return to_camera @ turn, to_camera @ (start - turn @ start - eye)


def place_in_front_of_camera(
    model: BodyModel,
    world: WorldMotion,
    *,
    distance: float = 3.5,
    height: float = 1.0,
    yaw: float = 0.0,
    image_size: tuple[int, int] = (704, 1280),
    fov_degrees: float = 50.0,
    fps: float | None = None,
    ground: bool = True,
) -> SMPLMotion:
    """``world`` seen by a centred pinhole camera of ``image_size`` (H, W) pixels and ``fov_degrees`` vertical field
    of view, placed as the module docstring says; resampled to ``fps`` first when given (None or 0: keep)."""
    if not (math.isfinite(fov_degrees) and 1 <= fov_degrees <= 170):
        raise CoMoViError(f"fov_degrees must be between 1 and 170, got {fov_degrees}")
    camera = PinholeCamera.default_for(int(image_size[0]), int(image_size[1]), fov_degrees)
    if fps:
        world = resample(world, fps)
    if ground:
        world = on_ground(model, world)
    rotation, offset = view_transform(model, world, distance=distance, height=height, yaw=yaw)
    orient, transl = rigid_transform(model, world.global_orient, world.transl, world.betas, rotation, offset)
    depth = (root_joint(model, world.betas) + transl)[:, 2]
    if np.any(depth < MIN_DEPTH) or np.any(transl[:, 2] <= 0):
        bad = int(np.argmax((depth < MIN_DEPTH) | (transl[:, 2] <= 0)))
        raise CoMoViError(
            f"the body{_of(world)} walks behind the camera: in frame {bad} its root is {depth[bad]:.2f} m in front "
            f"of it; increase distance (now {distance} m) or turn the body with yaw so that it walks across the view"
        )
    return SMPLMotion(orient, world.body_pose, world.betas, transl, world.fps, camera, world.gender)


def _of(world: WorldMotion) -> str:
    return f" of {world.source}" if world.source else ""
