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


def face_corners(values: torch.Tensor, faces: torch.Tensor) -> list[torch.Tensor]:
    """values (T, V, D) per vertex, faces (F, 3) -> the values at each face's 3 corners, 3 x (F, T, D).

    Vertex-major (rows are vertices, index_select and its backward index_add along dim 0): on a CPU 2-3x faster
    than ``values[:, faces]``, whose backward is an accumulating index_put, or an index_add along dim 1."""
    rows = values.transpose(0, 1).reshape(values.shape[1], -1)  # (V, T*D)
    return [rows.index_select(0, faces[:, c]).view(faces.shape[0], *values.shape[::2]) for c in range(3)]


def to_vertices(face_values: torch.Tensor, faces: torch.Tensor, num_vertices: int) -> torch.Tensor:
    """face_values (F, T, D) -> (T, V, D): each vertex gets the sum over the faces it is a corner of."""
    flat = face_values.reshape(faces.shape[0], -1)
    out = flat.new_zeros(num_vertices, flat.shape[1])
    for c in range(3):
        out = out.index_add(0, faces[:, c], flat)
    return out.view(num_vertices, *face_values.shape[1:]).transpose(0, 1)


def vertex_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Area-weighted unit vertex normals, as PyTorch3D's ``Meshes.verts_normals``.

    vertices: (T, V, 3) float; faces: (F, 3) long. Returns (T, V, 3).
    """
    a, b, c = face_corners(vertices, faces)  # (F, T, 3) each
    face_normals = torch.linalg.cross(b - a, c - a, dim=-1)
    return F.normalize(to_vertices(face_normals, faces, vertices.shape[1]), dim=-1, eps=1e-6)


def semantic_value(part_ids: torch.Tensor, facing: torch.Tensor) -> torch.Tensor:
    """Semantic channel: (2p+1)/48 where ``facing`` (nz < 0) else (2p+2)/48."""
    return (2 * part_ids + 1 + (~facing).to(part_ids.dtype)).to(torch.float32) / (2 * NUM_PARTS)


def vertex_colors(normals: torch.Tensor, part_ids: torch.Tensor) -> torch.Tensor:
    """(T, V, 3) unit normals and (V,) part ids -> (T, V, 3) colours in (sem, ny, nx) order."""
    sem = semantic_value(part_ids.to(normals.device).expand(normals.shape[:-1]), normals[..., 2] < 0)
    return torch.stack((sem.to(normals.dtype), normals[..., 1] / 2 + 0.5, normals[..., 0] / 2 + 0.5), dim=-1)
