"""The inputs every renderer backend (``raster_torch``, ``render_gl``) checks before it draws."""

from __future__ import annotations

from ..errors import CoMoViError
from .shading import check_shading


def check_frame_inputs(vertices, faces, colors, normals, shading: str) -> None:
    """What every backend's ``render_frames`` checks first (see the module docstring): a known shading,
    vertices (T, V, 3), faces (F, 3) with F > 0, colors and normals of the vertices' shape."""
    check_shading(shading)
    if vertices.ndim != 3 or vertices.shape[-1] != 3:
        raise CoMoViError(f"vertices must have shape (T, V, 3), got {tuple(vertices.shape)}")
    if faces.ndim != 2 or faces.shape[-1] != 3 or faces.shape[0] == 0:
        raise CoMoViError(f"faces must have shape (F, 3) with F > 0, got {tuple(faces.shape)}")
    for name, value in (("colors", colors), ("normals", normals)):
        if tuple(value.shape) != tuple(vertices.shape):
            raise CoMoViError(
                f"{name} must have the shape of vertices {tuple(vertices.shape)}, got {tuple(value.shape)}"
            )
