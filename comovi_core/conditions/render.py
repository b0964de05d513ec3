"""Pose-condition videos of a SMPL motion: skeleton, depth, normal and mesh, chunk by chunk.

``render_pose_conditions(model, motion)`` poses the motion with the body model (camera-space SMPL parameters, as the
motion file stores them), takes the COCO-18 keypoints (``keypoints``) and draws, per frame and at the camera's image
size (or another ``camera``):

    skeleton  OpenPose / DWPose body skeleton on black (``skeleton``)
    depth     grey, nearer brighter, normalised per clip (``surfaces``)
    normal    camera-space normals in the BAE / ControlNet colours (``surfaces``)
    mesh      the body shaded grey on black (``surfaces``)

Every picture is (T, H, W, 3) float32 in [0, 1], ComfyUI's IMAGE layout. Depth, normal and mesh come from one pass
of the motion map's rasteriser; asking for the skeleton alone skips it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch

from ..body.camera import PinholeCamera
from ..body.motion_file import SMPLMotion
from ..body.smpl import BodyModel, camera_vertices
from ..errors import CoMoViError
from ..motion_map.render import resolve_backend
from .keypoints import PoseKeypoints, camera_keypoints, project_keypoints
from .skeleton import draw_skeleton, skeleton_style
from .surfaces import depth_image, mesh_image, normal_image, render_surfaces

CONDITION_KINDS = ("skeleton", "depth", "normal", "mesh")
SURFACE_KINDS = ("depth", "normal", "mesh")


@dataclass
class PoseConditions:
    keypoints: PoseKeypoints  # COCO-18 keypoints of these frames
    skeleton: torch.Tensor | None  # (T, H, W, 3) float32 in [0, 1]; None when not asked for
    depth: torch.Tensor | None
    normal: torch.Tensor | None
    mesh: torch.Tensor | None
    first_frame: int  # index of these frames' first in the whole clip

    def image(self, kind: str) -> torch.Tensor | None:
        return getattr(self, kind)


def check_condition_inputs(model, motion, kinds: Sequence[str]) -> None:
    """Refuse missing inputs and unknown kinds before any work, saying what to connect or choose."""
    if not all(hasattr(model, a) for a in ("smpl", "faces", "is_standin")):
        raise CoMoViError(
            f"pose conditions need a SMPL body model (load one with Load SMPL Model), got {type(model).__name__}"
        )
    if not all(hasattr(motion, a) for a in ("camera", "full_pose", "num_frames")):
        raise CoMoViError(
            "pose conditions need a SMPL motion (from the CoMoVi sampler, Video To SMPL Motion or Load SMPL Motion), "
            f"got {type(motion).__name__}"
        )
    unknown = [k for k in kinds if k not in CONDITION_KINDS]
    if unknown or not kinds:
        raise CoMoViError(f"unknown pose-condition kinds {unknown or list(kinds)}; choose from {list(CONDITION_KINDS)}")


def _check_in_front(vertices: torch.Tensor) -> tuple[float, float]:
    """(T, V, 3) camera-space vertices -> the clip's (nearest, farthest) vertex z in front of the camera; refuses
    frames whose body lies wholly behind the camera."""
    in_front = vertices[..., 2] > 0  # (T, V)
    behind = torch.nonzero(~in_front.any(1)).squeeze(1).tolist()
    if behind:
        shown = ", ".join(str(i) for i in behind[:10]) + (" ..." if len(behind) > 10 else "")
        raise CoMoViError(
            f"the body is behind the camera in {len(behind)} of {vertices.shape[0]} frames ({shown}): every vertex "
            "has camera z <= 0. The motion's transl and global_orient must place the body in front of the camera "
            "(OpenCV frame: z forward, a few metres); check that the motion belongs to this camera"
        )
    z = vertices[..., 2][in_front]
    return float(z.min()), float(z.max())


def iter_pose_conditions(
    model: BodyModel,
    motion: SMPLMotion,
    *,
    camera: PinholeCamera | None = None,
    kinds: Sequence[str] = CONDITION_KINDS,
    line_scale: float = 0.0,
    backend: str = "auto",
    frames_per_chunk: int = 16,
) -> Iterator[PoseConditions]:
    """The pose conditions of ``motion`` chunk by chunk (bounded memory for long, large videos).

    camera: default the motion's own; kinds: which pictures to draw (``CONDITION_KINDS``); line_scale: the skeleton's
    limb width in multiples of 4 px, 0 by image size (``skeleton.skeleton_style``); backend: the motion-map renderer
    (``motion_map.render.BACKENDS``). Posing runs without gradients on the body model's device."""
    check_condition_inputs(model, motion, kinds)
    camera = camera or motion.camera
    style = skeleton_style(camera.height, camera.width, line_scale)
    with torch.no_grad():
        body = camera_vertices(model, motion)
        full_pose = torch.from_numpy(motion.full_pose).to(body.joints.device)
        points, face_normals = camera_keypoints(model, body, full_pose, model.faces)
    near, far = _check_in_front(body.vertices)
    keypoints = project_keypoints(points, face_normals, camera)
    surfaces_wanted = any(k in kinds for k in SURFACE_KINDS)
    faces = model.faces.to(body.vertices.device)
    if surfaces_wanted:
        pixels = motion.num_frames * camera.height * camera.width
        backend = resolve_backend(backend, body.vertices.device, pixels)
    step = max(1, frames_per_chunk)
    for start in range(0, motion.num_frames, step):
        chunk = slice(start, start + step)
        part = PoseKeypoints(
            keypoints.camera_points[chunk], keypoints.points[chunk], keypoints.confidence[chunk], camera.image_size
        )
        skeleton = draw_skeleton(part, style).to(torch.float32).div_(255.0) if "skeleton" in kinds else None
        depth = normal = mesh = None
        if surfaces_wanted:
            surfaces = render_surfaces(body.vertices[chunk].to(torch.float32), faces, camera, backend)
            depth = depth_image(surfaces.depth, near, far) if "depth" in kinds else None
            normal = normal_image(surfaces) if "normal" in kinds else None
            mesh = mesh_image(surfaces) if "mesh" in kinds else None
        yield PoseConditions(part, skeleton, depth, normal, mesh, start)


def render_pose_conditions(
    model: BodyModel, motion: SMPLMotion, *, callback: Callable[[PoseConditions], None] | None = None, **options
) -> PoseConditions:
    """All pose conditions of ``motion`` at once, on the CPU; the other arguments as ``iter_pose_conditions``.

    callback(chunk) runs after each chunk of frames (progress; raising from it stops the render). The pictures are
    filled in place chunk by chunk, so the peak memory is the result plus one chunk."""
    images: dict[str, torch.Tensor] = {}
    keypoints = []
    for chunk in iter_pose_conditions(model, motion, **options):
        for kind in CONDITION_KINDS:
            image = chunk.image(kind)
            if image is not None:
                whole = images.setdefault(kind, torch.empty((motion.num_frames, *image.shape[1:]), dtype=image.dtype))
                whole[chunk.first_frame : chunk.first_frame + image.shape[0]] = image
        keypoints.append(chunk.keypoints)
        if callback is not None:
            callback(chunk)
    joined = PoseKeypoints(
        *(torch.cat([getattr(k, f).cpu() for k in keypoints]) for f in ("camera_points", "points", "confidence")),
        keypoints[0].image_size,
    )
    return PoseConditions(joined, *(images.get(k) for k in CONDITION_KINDS), 0)
