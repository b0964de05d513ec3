"""Render SMPL-like meshes into motion-map images with a chosen backend.

Backends (all produce the same picture; tests compare them):
    torch     pure PyTorch rasterizer (``raster_torch``): no OpenGL, CPU or CUDA, batched over frames.
    pyrender  OpenGL through pyrender (``render_gl``), headless on EGL or OSMesa.
    auto      torch on CUDA and for small clips on CPU; for large clips on CPU pyrender when an OpenGL
              context can be made, else torch (see ``resolve_backend``).

Every backend implements::

    render_frames(vertices, faces, colors, normals, camera, shading) -> (images, depth)

    vertices (T, V, 3) float32, OpenCV camera space (z forward, metres)
    faces    (F, 3) int64
    colors   (T, V, 3) per-vertex colours (sem, ny, nx) from ``colors.vertex_colors``
    normals  (T, V, 3) unit vertex normals from ``colors.vertex_normals``
    images   (T, H, W, 3) float32 in [0, 1], white where nothing is drawn
    depth    (T, H, W) float32 camera z of the visible surface, 0 where nothing is drawn

Only the closest surface is drawn, without anti-aliasing, as the release's renderer did.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from ..body.camera import PinholeCamera
from ..body.smpl import camera_vertices
from ..errors import BackendUnavailableError, CoMoViError
from .colors import vertex_colors, vertex_normals
from .shading import check_shading

log = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "pyrender")
# `auto` on CPU tries OpenGL only for clips of at least this many pixels (frames x height x width). Finding
# out whether OpenGL works costs 1-5 s once per process (a child Python per platform); on a 2-core CPU the
# torch rasteriser draws ~11 Mpx/s and OSMesa ~19 Mpx/s, so below ~100 Mpx one render never wins the probe
# back; 16 Mpx (e.g. 81 frames at 352x640) is where it does over a few renders in one process.
AUTO_GL_MIN_PIXELS = 16_000_000


@dataclass
class MotionMapFrames:
    images: torch.Tensor  # (T, H, W, 3) float32 in [0, 1], channels (sem, ny, nx)
    mask: torch.Tensor  # (T, H, W) bool, True where the body is drawn
    depth: torch.Tensor  # (T, H, W) float32 camera z, 0 on background
    first_frame: int  # index of images[0] in the whole clip
    backend: str  # the backend that drew them


def resolve_backend(backend: str, device: torch.device, pixels: int | None = None) -> str:
    """Turn ``auto`` into a concrete backend name and check a concrete one can run.

    ``pixels``: frames x height x width of the clip to draw. ``auto`` picks torch on CUDA and, on CPU,
    for clips under ``AUTO_GL_MIN_PIXELS`` (without asking whether OpenGL works, which costs seconds);
    for larger (or unknown) clips on CPU it picks pyrender when an OpenGL context can be made.
    """
    if backend not in BACKENDS:
        raise CoMoViError(f"unknown renderer backend {backend!r}; choose one of {list(BACKENDS)}")
    if backend == "torch":
        return backend
    from . import render_gl

    if backend == "pyrender":
        render_gl.require_available()
        return backend
    if device.type == "cuda":
        chosen, why = "torch", "the frames are on CUDA"
    elif pixels is not None and pixels < AUTO_GL_MIN_PIXELS:
        chosen = "torch"
        why = f"the clip is small ({pixels / 1e6:.1f} Mpx < {AUTO_GL_MIN_PIXELS / 1e6:.0f} Mpx: OpenGL costs more)"
    elif render_gl.is_available():
        chosen, why = "pyrender", "an OpenGL context is available"
    else:
        chosen, why = "torch", "no OpenGL context could be made (" + render_gl.unavailable_reason() + ")"
    log.info("motion-map renderer: auto picked the %s backend because %s", chosen, why)
    return chosen


def backend_render_frames(backend: str) -> Callable:
    """The ``render_frames`` function of a concrete backend name (see the module docstring for its contract)."""
    if backend == "torch":
        from .raster_torch import render_frames
    elif backend == "pyrender":
        from .render_gl import render_frames
    else:  # resolve_backend guarantees a concrete name
        raise BackendUnavailableError(f"no backend named {backend!r}")
    return render_frames


def check_mesh(vertices: torch.Tensor, faces: torch.Tensor, part_ids: torch.Tensor) -> None:
    if vertices.ndim != 3 or vertices.shape[-1] != 3:
        raise CoMoViError(f"vertices must have shape (T, V, 3), got {tuple(vertices.shape)}")
    if not torch.isfinite(vertices).all():
        raise CoMoViError("vertices contain NaN or infinite values; check the SMPL parameters that produced them")
    if faces.ndim != 2 or faces.shape[-1] != 3 or faces.numel() == 0:
        raise CoMoViError(f"faces must have shape (F, 3) with F > 0, got {tuple(faces.shape)}")
    if int(faces.min()) < 0 or int(faces.max()) >= vertices.shape[1]:
        raise CoMoViError(f"faces index vertices outside 0..{vertices.shape[1] - 1}")
    if part_ids.shape != (vertices.shape[1],):
        raise CoMoViError(f"part_ids must have one entry per vertex ({vertices.shape[1]}), got {tuple(part_ids.shape)}")


def iter_motion_maps(
    vertices: torch.Tensor | np.ndarray,
    faces: torch.Tensor | np.ndarray,
    part_ids: torch.Tensor | np.ndarray,
    camera: PinholeCamera,
    shading: str = "comovi_v1",
    backend: str = "auto",
    device: str | torch.device | None = None,
    frames_per_chunk: int = 16,
) -> Iterator[MotionMapFrames]:
    """Render a clip chunk by chunk (bounded memory for long, large videos).

    vertices: (T, V, 3) in OpenCV camera space (SMPL output plus the camera translation).
    """
    check_shading(shading)
    device = torch.device(device) if device is not None else torch.as_tensor(vertices).device
    vertices = torch.as_tensor(vertices, dtype=torch.float32, device=device)
    faces = torch.as_tensor(
        np.asarray(faces, dtype=np.int64) if isinstance(faces, np.ndarray) else faces, device=device
    ).long()
    part_ids = torch.as_tensor(part_ids, device=device).long()
    check_mesh(vertices, faces, part_ids)
    chosen = resolve_backend(backend, device, vertices.shape[0] * camera.height * camera.width)
    render_frames = backend_render_frames(chosen)
    for start in range(0, vertices.shape[0], max(1, frames_per_chunk)):
        verts = vertices[start : start + frames_per_chunk]
        normals = vertex_normals(verts, faces)
        colors = vertex_colors(normals, part_ids)
        images, depth = render_frames(verts, faces, colors, normals, camera, shading)
        yield MotionMapFrames(images, depth > 0, depth, start, chosen)


def render_motion_map(*args, **kwargs) -> MotionMapFrames:
    """Render a whole clip at once; same arguments as ``iter_motion_maps``."""
    return _joined(list(iter_motion_maps(*args, **kwargs)))


def _joined(chunks: list[MotionMapFrames]) -> MotionMapFrames:
    return MotionMapFrames(
        torch.cat([c.images for c in chunks]),
        torch.cat([c.mask for c in chunks]),
        torch.cat([c.depth for c in chunks]),
        0,
        chunks[0].backend,
    )


def iter_motion(
    body,
    motion,
    camera: PinholeCamera | None = None,
    shading: str = "comovi_v1",
    backend: str = "auto",
    frames=None,
    frames_per_chunk: int = 16,
) -> Iterator[MotionMapFrames]:
    """Pose a ``SMPLMotion`` with ``body`` and render its motion map chunk by chunk (``iter_motion_maps``).

    camera: default the motion's own; frames: None (all), an int (the first n) or an index tensor.
    Posing runs without gradients on the body model's device."""
    with torch.no_grad():
        vertices = camera_vertices(body, motion).vertices
    vertices = vertices[:frames] if frames is None or isinstance(frames, int) else vertices[frames]
    return iter_motion_maps(
        vertices,
        body.faces,
        body.part_ids,
        camera or motion.camera,
        shading,
        backend,
        frames_per_chunk=frames_per_chunk,
    )


def render_motion(
    body, motion, camera: PinholeCamera | None = None, shading: str = "comovi_v1", backend: str = "auto", frames=None
) -> MotionMapFrames:
    """The motion map of a ``SMPLMotion`` at once; same arguments as ``iter_motion``."""
    return _joined(list(iter_motion(body, motion, camera, shading, backend, frames)))
