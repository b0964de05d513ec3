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


def vertex_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Area-weighted unit vertex normals, as PyTorch3D's ``Meshes.verts_normals``.

    vertices: (T, V, 3) float; faces: (F, 3) long. Returns (T, V, 3).
    """
    tri = vertices[:, faces]  # (T, F, 3 corners, 3 xyz)
    face_normals = torch.linalg.cross(tri[:, :, 1] - tri[:, :, 0], tri[:, :, 2] - tri[:, :, 0], dim=-1)  # (T, F, 3)
    normals = torch.zeros_like(vertices)
    for corner in range(3):
        normals.index_add_(1, faces[:, corner], face_normals)
    return F.normalize(normals, dim=-1, eps=1e-6)


def semantic_value(part_ids: torch.Tensor, facing: torch.Tensor) -> torch.Tensor:
    """Semantic channel: (2p+1)/48 where ``facing`` (nz < 0) else (2p+2)/48."""
    return (2 * part_ids + 1 + (~facing).to(part_ids.dtype)).to(torch.float32) / (2 * NUM_PARTS)


def vertex_colors(normals: torch.Tensor, part_ids: torch.Tensor) -> torch.Tensor:
    """(T, V, 3) unit normals and (V,) part ids -> (T, V, 3) colours in (sem, ny, nx) order."""
    sem = semantic_value(part_ids.to(normals.device).expand(normals.shape[:-1]), normals[..., 2] < 0)
    return torch.stack((sem.to(normals.dtype), normals[..., 1] / 2 + 0.5, normals[..., 0] / 2 + 0.5), dim=-1)
