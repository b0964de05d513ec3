"""Decode a motion map back into per-pixel body part, facing sign and surface normal.

``flat`` maps are exact: c = pixel, part and facing from the semantic channel (48 levels),
(nx, ny) from the other two channels, nz = -+sqrt(1 - nx^2 - ny^2), negative when facing the camera.

``comovi_v1`` maps hide c behind an unknown shading factor s = 0.5 + 0.3 max(0, n.l) in [0.5, 0.8]:
pixel = c s + 0.2. Every semantic level k gives one candidate s_k = (R - 0.2) / sem_k and thus one
candidate normal n_k; the decoder keeps the candidate whose own shading, 0.5 + 0.3 max(0, n_k.l),
best reproduces s_k and that can be seen at all (its normal points back toward the camera, up
to a margin: a closed body is seen from outside). The light direction l needs the surface point, so pass the camera and the depth
(per pixel, or one distance for the whole body, e.g. the motion's ``transl`` z).

What comovi_v1 decoding can promise (measured on the stand-in body at 352x640, see tests): the
normal is recovered almost exactly on >90% of body pixels; the facing sign on ~99%; the part label on
~94%, with exact depth or with one body distance alike. The misses are a true ambiguity of this
shading, not noise: a colour c*s can come from part k with normal n or from a neighbouring semantic
level with a slightly different normal and shading, and both explain the pixel within rounding.
Use ``flat`` maps where exact labels matter. Ambiguities that remain, in both modes: on pixels
straddling two parts (or a facing flip) the semantic value is a blend and the nearest level is
returned; lossy video coding moves values by a few levels of 1/255, which can flip labels of
neighbouring semantic levels — decode PNGs for exact results.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..body.parts import NUM_PARTS
from ..errors import CoMoViError
from .camera import PinholeCamera
from .shading import AMBIENT, DIFFUSE, LIGHT_POSITION, SPECULAR, check_shading

LEVELS = 2 * NUM_PARTS  # 48 semantic levels
DEFAULT_BODY_DISTANCE = 4.0  # metres, used for comovi_v1 when no depth is given
VISIBILITY_MARGIN = 0.2  # how far past perpendicular to the view ray a decoded normal may lean


@dataclass
class DecodedMotionMap:
    mask: torch.Tensor  # (T, H, W) bool, body pixels
    part: torch.Tensor  # (T, H, W) int64 part index 0..23, -1 on background
    facing: torch.Tensor  # (T, H, W) bool, True where the surface faces the camera (nz < 0)
    normal: torch.Tensor  # (T, H, W, 3) unit normal in OpenCV camera space, 0 on background


def _normal_from_xy(nx: torch.Tensor, ny: torch.Tensor, facing: torch.Tensor) -> torch.Tensor:
    nz = (1 - nx.square() - ny.square()).clamp_min(0).sqrt()
    return F.normalize(torch.stack((nx, ny, torch.where(facing, -nz, nz)), -1), dim=-1, eps=1e-6)


def decode_motion_map(
    images: torch.Tensor,
    shading: str = "comovi_v1",
    camera: PinholeCamera | None = None,
    depth: torch.Tensor | float | None = None,
    background_tolerance: float = 1.5 / 255,
) -> DecodedMotionMap:
    """images (T, H, W, 3) in [0, 1], channels (sem, ny, nx) as rendered. See the module docstring."""
    check_shading(shading)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise CoMoViError(f"motion maps must have shape (T, H, W, 3), got {tuple(images.shape)}")
    images = images.float()
    mask = (images < 1 - background_tolerance).any(-1)
    pix = images[mask]  # (N, 3)
    if shading == "flat":
        level = (pix[:, 0] * LEVELS - 1).round().clamp(0, LEVELS - 1).long()
        nx, ny = 2 * pix[:, 2] - 1, 2 * pix[:, 1] - 1
    else:
        level, nx, ny = _decode_shaded(images, mask, pix, camera, depth)
    facing = level % 2 == 0
    part = torch.full(mask.shape, -1, dtype=torch.long, device=images.device)
    part[mask] = level // 2
    face = torch.zeros(mask.shape, dtype=torch.bool, device=images.device)
    face[mask] = facing
    normal = torch.zeros(*mask.shape, 3, device=images.device)
    normal[mask] = _normal_from_xy(nx, ny, facing)
    return DecodedMotionMap(mask, part, face, normal)


def _decode_shaded(images, mask, pix, camera, depth):
    t, h, w, _ = images.shape
    camera = camera or PinholeCamera.default_for(h, w)
    if camera.image_size != (h, w):
        raise CoMoViError(f"camera image_size {camera.image_size} does not match the motion map size {(h, w)}")
    rays = camera.pixel_rays(device=images.device).expand(t, h, w, 3)[mask]  # (N, 3), z = 1
    if depth is None:
        depth = DEFAULT_BODY_DISTANCE
    z = depth[mask].float() if torch.is_tensor(depth) else torch.full_like(rays[:, 0], float(depth))
    points = rays * z[:, None]
    to_light = F.normalize(torch.tensor(LIGHT_POSITION, device=images.device) - points, dim=-1)  # (N, 3)

    sem_levels = torch.arange(1, LEVELS + 1, device=images.device, dtype=torch.float32) / LEVELS  # (48,)
    lit = pix - SPECULAR  # c * s
    s = lit[:, :1] / sem_levels  # (N, 48) candidate shading factors
    nx = 2 * lit[:, 2:3] / s - 1  # (N, 48)
    ny = 2 * lit[:, 1:2] / s - 1
    facing = (torch.arange(LEVELS, device=images.device) % 2 == 0).expand_as(s)
    n = _normal_from_xy(nx.clamp(-1, 1), ny.clamp(-1, 1), facing)  # (N, 48, 3)
    predicted = AMBIENT + DIFFUSE * (n * to_light[:, None]).sum(-1).clamp_min(0)
    cost = (predicted - s).abs()
    cost += 10 * ((AMBIENT - s).clamp_min(0) + (s - AMBIENT - DIFFUSE).clamp_min(0))  # s outside [0.5, 0.8]
    cost += 10 * (nx.square() + ny.square() - 1).clamp_min(0)  # |n_xy| > 1
    # a closed body is seen from outside: its visible normals point back along the viewing ray
    # (small margin: interpolated vertex normals lean a little past the silhouette)
    view = F.normalize(rays, dim=-1)[:, None]  # (N, 1, 3)
    cost += 10 * ((n * view).sum(-1) - VISIBILITY_MARGIN).clamp_min(0)
    level = cost.argmin(-1)
    pick = level[:, None]
    return level, nx.gather(1, pick)[:, 0].clamp(-1, 1), ny.gather(1, pick)[:, 0].clamp(-1, 1)
