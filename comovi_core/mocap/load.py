"""One entry for every motion file CoMoVi reads: our ``motion.npz``, AMASS / SMPL-H ``.npz`` and BVH, each as a
camera-frame ``SMPLMotion`` ready for the sampler's motion_to_video mode."""

from __future__ import annotations

from pathlib import Path

from ..body.motion_file import SMPLMotion, load_motion
from ..body.smpl import BodyModel
from ..body.world import CAMERA_TO_WORLD, motion_to_world, resample, rigid_transform
from ..errors import CoMoViError
from .amass import npz_keys, read_amass
from .placement import place_in_front_of_camera

SUPPORTED = (
    ".npz: a CoMoVi motion.npz (already in front of its camera) or an AMASS / SMPL-H clip; "
    ".bvh: CMU, Mixamo, Unreal (UE5) or CoMoVi's own SMPL BVH"
)


def load_motion_file(
    path: str | Path,
    model: BodyModel,
    *,
    fps: float | None = None,
    distance: float = 3.5,
    height: float = 1.0,
    yaw: float = 0.0,
    image_size: tuple[int, int] = (704, 1280),
    fov_degrees: float = 50.0,
) -> SMPLMotion:
    """The motion in ``path`` for ``model``, resampled to ``fps`` (None or 0: the file's rate).

    Mocap files (AMASS, BVH) have no camera: they are placed in front of one (``placement``: ``distance`` and
    ``height`` in metres, ``yaw`` in degrees, 0 = facing the camera; a centred camera of ``image_size`` (H, W) and
    ``fov_degrees``). A CoMoVi ``motion.npz`` keeps its own camera and placement; only ``fps`` applies to it (its
    foot contacts, if any, are dropped when it is resampled)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        if "format_version" in npz_keys(path):  # ours: camera frame already
            return _resampled(model, load_motion(path), fps)
        world = read_amass(path, model)
    elif suffix == ".bvh":
        from .bvh import read_bvh

        world = read_bvh(path, model)
    else:
        raise CoMoViError(f"{path.name}: unknown kind of motion file; CoMoVi reads {SUPPORTED}")
    return place_in_front_of_camera(
        model,
        world,
        distance=distance,
        height=height,
        yaw=yaw,
        image_size=image_size,
        fov_degrees=fov_degrees,
        fps=fps,
    )


def _resampled(model: BodyModel, motion: SMPLMotion, fps: float | None) -> SMPLMotion:
    """A camera-frame motion at ``fps``, through the y-up world (``resample``); foot contacts are not carried over."""
    if not fps or fps == motion.fps:
        return motion
    world = resample(motion_to_world(model, motion), fps)
    orient, transl = rigid_transform(model, world.global_orient, world.transl, world.betas, CAMERA_TO_WORLD.T)
    return SMPLMotion(orient, world.body_pose, world.betas, transl, fps, motion.camera, motion.gender)
