"""A differentiable point-splat image of the motion map, to compare a posed body with a map colour by colour.

Each visible, camera-facing vertex carries its shaded motion-map colour (``vertex_colors`` + ``shade``: the
semantic level and the normal) and a third of the projected area of its faces; it is splatted onto the
pixel grid as a normalised Gaussian. Coverage is the summed weight (clipped at 1), colour the weighted
mean, and the background white, so the result approximates the rendered map blurred by the Gaussian.
Comparing it with the map blurred by the same amount (``blur_to``) needs no decoding of part labels, so
the colour mixes a VAE round trip leaves at part borders - which decoding turns into wrong labels of
anatomically unrelated parts - cost what their colour difference is, and no more.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..body.camera import PinholeCamera
from ..motion_map.colors import face_corners, to_vertices, vertex_colors
from ..motion_map.degrade import gaussian_blur
from ..motion_map.shading import BACKGROUND, shade

SPLAT_SIGMA = 1.5  # Gaussian of a vertex splat, pixels (the finest the fit uses)
CHANNEL_WEIGHT = (3.0, 1.0, 1.0)  # sem, ny, nx: semantic levels are 1/48 apart, so the semantic channel counts more
CHARBONNIER = 0.02  # colour units below which the per-pixel cost is quadratic


def projected_vertex_area(uv: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """uv (T, V, 2) projected vertices -> (T, V): a third of the projected area of each vertex's faces that
    look at the camera (units of uv squared), so that vertex sums approximate pixel sums of the surface."""
    a, b, c = face_corners(uv, faces)  # (F, T, 2) each
    e1, e2 = b - a, c - a
    face_area = torch.relu(-0.5 * (e1[..., 0] * e2[..., 1] - e1[..., 1] * e2[..., 0]))  # signed < 0: facing
    # a third per corner, divided per corner (one division's gradient per corner, summed after: the old order)
    return to_vertices([face_area[..., None] / 3 for _ in range(3)], faces, uv.shape[1])[..., 0]


def splat_targets(images: torch.Tensor, camera: PinholeCamera, max_side: int, sigmas) -> tuple[dict, PinholeCamera]:
    """(T, H, W, 3) map -> ({sigma: the map area-averaged to ``max_side`` and blurred to match a splat of
    that sigma}, the camera at that size). Averaging (not nearest sampling) keeps the colour mixes."""
    scale = min(1.0, max_side / max(camera.height, camera.width))
    height, width = max(16, round(camera.height * scale)), max(16, round(camera.width * scale))
    small = F.interpolate(images.permute(0, 3, 1, 2).float(), size=(height, width), mode="area").permute(0, 2, 3, 1)
    # a splat edge is the drawn edge blurred by sigma; the averaged map's already is by ~1/12 px^2
    return {s: blur_to(small, math.sqrt(max(s**2 - 1 / 12, 0.0))) for s in sigmas}, camera.resized(height, width)


def splat(
    uv: torch.Tensor, colors: torch.Tensor, area: torch.Tensor, height: int, width: int, sigma: float = SPLAT_SIGMA
) -> torch.Tensor:
    """uv (T, V, 2) pixel positions, colors (T, V, C), area (T, V) in pixels^2 -> (T, H, W, C) image on white.

    Each vertex adds ``area`` x a unit-mass Gaussian (std ``sigma``): its area and area-weighted colour are
    dropped onto the 4 nearest pixel centres with bilinear weights (differentiable in uv), then the whole
    grid is blurred by a separable Gaussian - the same sum as splatting each vertex, for a fraction of the cost."""
    frames, _, channels = colors.shape
    centre = uv - 0.5  # pixel centres at integers
    corner = centre.detach().floor()
    frac = centre - corner
    corner = corner.long()
    values = torch.cat([area[..., None], area[..., None] * colors], -1)  # (T, V, 1 + C)
    # one index_add into a grid with a 1-pixel border that catches everything off screen (cut away after), not one
    # masked index_add per corner: the same sums in the same order, without the masks' gathers and scatters. One
    # product per corner (not one broadcast over the stacked weights), so that the gradient of ``values`` adds up
    # the corners as before: the fit amplifies one rounding unit (docs/fitting.md), and the splat is bit-identical
    pad_h, pad_w = height + 2, width + 2
    frame = torch.arange(frames, device=uv.device)[:, None]
    index, contributions = [], []
    for dx, dy in ((0, 0), (1, 0), (0, 1), (1, 1)):
        col = (corner[..., 0] + dx).clamp(-1, width) + 1
        row = (corner[..., 1] + dy).clamp(-1, height) + 1
        index.append(((frame * pad_h + row) * pad_w + col).reshape(-1))
        weight = (frac[..., 0] if dx else 1 - frac[..., 0]) * (frac[..., 1] if dy else 1 - frac[..., 1])  # (T, V)
        contributions.append((weight[..., None] * values).reshape(-1, 1 + channels))
    grid = values.new_zeros(frames * pad_h * pad_w, 1 + channels).index_add(
        0, torch.cat(index), torch.cat(contributions)
    )
    radius = max(1, math.ceil(2.5 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=values.dtype, device=uv.device)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2) / (math.sqrt(2 * math.pi) * sigma)
    c = 1 + channels
    out = grid.view(frames, pad_h, pad_w, c)[:, 1:-1, 1:-1].contiguous().permute(0, 3, 1, 2)  # channels last
    out = F.conv2d(out, kernel.view(1, 1, 1, -1).repeat(c, 1, 1, 1), padding=(0, radius), groups=c)
    out = F.conv2d(out, kernel.view(1, 1, -1, 1).repeat(c, 1, 1, 1), padding=(radius, 0), groups=c).permute(0, 2, 3, 1)
    total, summed = out[..., :1], out[..., 1:]
    coverage = total.clamp(max=1)
    return coverage * summed / total.clamp_min(1e-6) + (1 - coverage) * BACKGROUND


def body_splat(
    vertices: torch.Tensor,
    normals: torch.Tensor,
    area: torch.Tensor,
    part_ids: torch.Tensor,
    camera: PinholeCamera,
    shading: str,
    sigma: float = SPLAT_SIGMA,
) -> torch.Tensor:
    """vertices, normals (T, V, 3) camera space, area (T, V) visible projected area in pixels^2 -> (T, H, W, 3)."""
    colors = shade(vertex_colors(normals, part_ids), normals, vertices, shading)
    return splat(camera.project(vertices), colors, area, camera.height, camera.width, sigma)


def blur_to(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """(T, H, W, C) -> the same blurred by a Gaussian of std ``sigma`` pixels (replicate edges)."""
    return gaussian_blur(images.permute(0, 3, 1, 2), sigma, "replicate").permute(0, 2, 3, 1)


def splat_cost(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(..., T, H, W, 3) predicted, (T, H, W, 3) target -> (..., T) robust colour difference summed over pixels, per
    pixel of body in ``target`` (leading dimensions of ``predicted``, e.g. candidate fits, are compared alike)."""
    weight = predicted.new_tensor(CHANNEL_WEIGHT)
    diff = torch.sqrt((predicted - target).square() + CHARBONNIER**2) - CHARBONNIER
    body = (target < BACKGROUND - 0.02).any(-1).float().sum((-2, -1)).clamp_min(1)  # (T,) pixels the map covers
    return (diff * weight).sum((-3, -2, -1)) / body
