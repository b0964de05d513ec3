"""Per-vertex motion-map colours (docs/motion_map.md), computed in OpenCV camera space.

For vertex normal n = (nx, ny, nz) and part p the release colours a vertex with
``nx/2 + 0.5``, ``ny/2 + 0.5`` and ``sem = (2p+1)/48`` when nz < 0 (facing the camera), else
``(2p+2)/48``. The release wrote frames with OpenCV (BGR), so the stored video - and therefore every
image we produce - has channel order R = sem, G = ny-term, B = nx-term. ``CHANNELS`` names them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..body.parts import NUM_PARTS

CHANNELS = ("sem", "ny", "nx")  # meaning of output channels R, G, B


def face_corners(values: torch.Tensor, faces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """values (T, V, D) per vertex, faces (F, 3) -> the values at each face's 3 corners, 3 x (F, T, D).

    Vertex-major: one ``index_select`` along dim 0 of the (V, T*D) view, whose backward is one ``index_add``
    along dim 0 (on a CPU 2-3x faster than ``values[:, faces]``, whose backward is an accumulating ``index_put``).
    The corners are gathered face after face (``faces.reshape(-1)``), so that the backward adds up a vertex's
    gradient in the order ``values[:, faces]``'s does: the same sums in the same order, bit for bit. (Three
    gathers, one per corner, add a vertex's gradient corner after corner: a different order, different
    roundings, and the fit, which amplifies a change of one rounding unit, ends elsewhere; docs/fitting.md.)"""
    rows = values.transpose(0, 1).reshape(values.shape[1], -1)  # (V, T*D)
    corners = rows.index_select(0, faces.reshape(-1)).view(faces.shape[0], 3, *values.shape[::2])
    return corners.unbind(1)


def to_vertices(corner_values, faces: torch.Tensor, num_vertices: int) -> torch.Tensor:
    """corner_values: 3 x (F, T, D), what each face gives its corner 0, 1, 2 -> (T, V, D): each vertex gets the
    sum over the faces it is a corner of, corner 0's faces first, then 1's, then 2's (one ``index_add`` along
    dim 0 per corner, as ``index_add`` along dim 1 of (T, V, D) sums them). One tensor per corner, not one for
    all, so that a caller's per-corner arithmetic (e.g. ``area / 3`` three times) keeps its gradient's order."""
    count, rest = faces.shape[0], corner_values[0].shape[1:]
    out = corner_values[0].new_zeros(num_vertices, rest.numel())
    for c in range(3):
        out = out.index_add(0, faces[:, c], corner_values[c].reshape(count, -1))
    return out.view(num_vertices, *rest).transpose(0, 1)


def vertex_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Area-weighted unit vertex normals, as PyTorch3D's ``Meshes.verts_normals``.

    vertices: (T, V, 3) float; faces: (F, 3) long. Returns (T, V, 3).
    """
    a, b, c = face_corners(vertices, faces)  # (F, T, 3) each
    face_normals = torch.linalg.cross(b - a, c - a, dim=-1)
    return F.normalize(to_vertices([face_normals] * 3, faces, vertices.shape[1]), dim=-1, eps=1e-6)


def semantic_value(part_ids: torch.Tensor, facing: torch.Tensor) -> torch.Tensor:
    """Semantic channel: (2p+1)/48 where ``facing`` (nz < 0) else (2p+2)/48."""
    return (2 * part_ids + 1 + (~facing).to(part_ids.dtype)).to(torch.float32) / (2 * NUM_PARTS)


def vertex_colors(normals: torch.Tensor, part_ids: torch.Tensor) -> torch.Tensor:
    """(T, V, 3) unit normals and (V,) part ids -> (T, V, 3) colours in (sem, ny, nx) order."""
    sem = semantic_value(part_ids.to(normals.device).expand(normals.shape[:-1]), normals[..., 2] < 0)
    return torch.stack((sem.to(normals.dtype), normals[..., 1] / 2 + 0.5, normals[..., 0] / 2 + 0.5), dim=-1)
