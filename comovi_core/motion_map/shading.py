"""Shading modes of the motion map.

``comovi_v1`` (default) reproduces how the release rendered its training data (PyTorch3D
HardPhongShader, default point light at (0, 1, 0), ambient 0.5, diffuse 0.3, specular 0.2 with
shininess 0, which makes the specular term a constant):

    pixel = c * (0.5 + 0.3 * max(0, n . l)) + 0.2,    l = unit(light - surface point)

with n the interpolated (then normalised) vertex normal and c the interpolated vertex colour, so
covered pixels lie in [0.2, 1.0]. ``flat`` is the paper's unshaded colour, pixel = c.
The background is white (1, 1, 1) in both modes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import CoMoViError

SHADINGS = ("comovi_v1", "flat")
DEFAULT_SHADING = "comovi_v1"
LIGHT_POSITION = (0.0, 1.0, 0.0)  # OpenCV camera space: 1 unit below the camera centre
AMBIENT, DIFFUSE, SPECULAR = 0.5, 0.3, 0.2
BACKGROUND = 1.0


def check_shading(shading: str) -> str:
    if shading not in SHADINGS:
        raise CoMoViError(f"unknown shading {shading!r}; choose one of {list(SHADINGS)}")
    return shading


def shade(colors: torch.Tensor, normals: torch.Tensor, points: torch.Tensor, shading: str) -> torch.Tensor:
    """Per-pixel shading. colors, normals, points: (..., 3) -> (..., 3) in [0, 1]."""
    check_shading(shading)
    if shading == "flat":
        return colors
    light = torch.tensor(LIGHT_POSITION, dtype=points.dtype, device=points.device)
    n = F.normalize(normals, dim=-1, eps=1e-6)
    to_light = F.normalize(light - points, dim=-1, eps=1e-6)
    diffuse = (n * to_light).sum(-1, keepdim=True).clamp_min(0)
    return colors * (AMBIENT + DIFFUSE * diffuse) + SPECULAR
