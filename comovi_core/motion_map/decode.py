"""Decode a motion map back into per-pixel body part, facing sign and surface normal.

``flat`` maps are exact: c = pixel, part and facing from the semantic channel (48 levels),
(nx, ny) from the other two channels, nz = -+sqrt(1 - nx^2 - ny^2), negative when facing the camera.

``comovi_v1`` maps hide c behind an unknown shading factor s = 0.5 + 0.3 max(0, n.l) in [0.5, 0.8]:
pixel = c s + 0.2. Every semantic level k gives one candidate s_k = (R - 0.2) / sem_k and thus one
candidate normal n_k; the decoder keeps the candidate whose own shading, 0.5 + 0.3 max(0, n_k.l),
best reproduces s_k and that can be seen at all (its normal points back toward the camera, up
to a margin: a closed body is seen from outside). The light direction l needs the surface point, so pass the camera
and the depth
(per pixel, or one distance for the whole body, e.g. the motion's ``transl`` z).

Labels are chosen per neighbourhood, not per pixel: each level's per-pixel cost (in colour units of
the semantic channel, so 8-bit rounding or coding noise moves every level's cost alike) is capped at
``COST_CAP`` and averaged over a ``LABEL_WINDOW`` x ``LABEL_WINDOW`` window of body pixels, and the
cheapest level wins. Why: comovi_v1 shading is ambiguous per pixel - a wrong semantic level can also
reproduce a pixel exactly, along thin curves of the image - so a per-pixel argmin flipped labels under
a 1/255 change of input (3.3% of body pixels between a float map and its 8-bit copy, stand-in body,
96x160; 0.4% with the window) and made fits depend on PNG rounding. A part is a region, so its level
explains the whole neighbourhood. ``confidence`` is about the share of the window the chosen level
explains; fitting ignores pixels below 0.5. Remaining ambiguity: pixels straddling two parts (or a
facing flip) hold a blend; ~3% of labels differ from the flat map at 96x160 (stand-in demo motion).
The body mask is ``min channel < 1 - BACKGROUND_TOLERANCE`` (0.12: body pixels stay below 0.88 in some
channel, measured max 0.77), so near-white background from lossy coding stays background, minus the
halo a blurred edge leaves (``body_mask``). A ``prior`` (a guess of the body drawn flat, e.g. the start
pose or a fitted pose) makes parts that the guess does not draw nearby cost more: on VAE-like degraded
maps (``motion_map.degrade``) it takes wrong part labels from 30% to 11% with the start pose as the guess.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..body.camera import PinholeCamera
from ..body.parts import NUM_PARTS
from ..errors import CoMoViError
from .shading import AMBIENT, DIFFUSE, LIGHT_POSITION, SPECULAR, check_shading

LEVELS = 2 * NUM_PARTS  # 48 semantic levels
DEFAULT_BODY_DISTANCE = 4.0  # metres, used for comovi_v1 when no depth is given
VISIBILITY_MARGIN = 0.2  # how far past perpendicular to the view ray a decoded normal may lean
BACKGROUND_TOLERANCE = 0.12  # body where some channel is below 1 - this (body pixels stay below 0.88 in some channel)
COST_CAP = 0.1  # per-pixel label costs are capped before averaging (colour units): a vote, not a sum
LABEL_WINDOW = 3  # label costs are averaged over this square neighbourhood (odd; 1 = per pixel)
HALO_FRACTION = 0.4  # a silhouette pixel lighter than this share of its darkest neighbour is blur halo, not body
LIGHTEST_BODY = 0.2  # darkness (1 - min channel) every drawn body pixel exceeds (measured: >= 0.23)
PRIOR_RADIUS = 8  # pixels: a prior's part is allowed this far from where the prior draws it
PRIOR_PENALTY = 0.03  # colour units added to the aggregated cost of levels the prior does not allow nearby


@dataclass
class DecodedMotionMap:
    mask: torch.Tensor  # (T, H, W) bool, body pixels
    part: torch.Tensor  # (T, H, W) int64 part index 0..23, -1 on background
    facing: torch.Tensor  # (T, H, W) bool, True where the surface faces the camera (nz < 0)
    normal: torch.Tensor  # (T, H, W, 3) unit normal in OpenCV camera space, 0 on background
    confidence: torch.Tensor | None = (
        None  # (T, H, W) in [0, 1]: about the share of the neighbourhood the chosen level explains
    )


def _normal_from_xy(nx: torch.Tensor, ny: torch.Tensor, facing: torch.Tensor) -> torch.Tensor:
    nz = (1 - nx.square() - ny.square()).clamp_min(0).sqrt()
    return F.normalize(torch.stack((nx, ny, torch.where(facing, -nz, nz)), -1), dim=-1, eps=1e-6)


def decode_motion_map(
    images: torch.Tensor,
    shading: str = "comovi_v1",
    camera: PinholeCamera | None = None,
    depth: torch.Tensor | float | None = None,
    background_tolerance: float = BACKGROUND_TOLERANCE,
    window: int | None = None,
    prior: torch.Tensor | None = None,
    prior_radius: int = PRIOR_RADIUS,
    prior_penalty: float = PRIOR_PENALTY,
) -> DecodedMotionMap:
    """images (T, H, W, 3) in [0, 1], channels (sem, ny, nx) as rendered. See the module docstring.

    ``window``: side of the square neighbourhood over which label costs are averaged (1: per pixel);
    default ``LABEL_WINDOW`` for comovi_v1 and 1 for flat maps (exact per pixel, no ambiguity to resolve).
    ``prior``: (T, H, W) semantic levels 0..47 of a guess of the body (-1 where it draws nothing), e.g.
    a fitted pose rendered flat (``levels_of``). A part the guess does not draw within ``prior_radius``
    pixels costs ``prior_penalty`` more, so a pixel takes a nearby part of the guess unless the colours
    clearly say otherwise. Adjacent levels belong to anatomically distant parts (rightHand, rightUpLeg,
    leftArm, ...), so this removes the confusions that hurt a fit most.
    """
    check_shading(shading)
    window = (1 if shading == "flat" else LABEL_WINDOW) if window is None else window
    if images.ndim != 4 or images.shape[-1] != 3:
        raise CoMoViError(f"motion maps must have shape (T, H, W, 3), got {tuple(images.shape)}")
    if window < 1 or window % 2 == 0:
        raise CoMoViError(f"window must be an odd number >= 1, got {window}")
    if prior is not None and prior.shape != images.shape[:3]:
        raise CoMoViError(f"prior must have shape {tuple(images.shape[:3])} (T, H, W), got {tuple(prior.shape)}")
    images = images.float()
    mask = body_mask(images, background_tolerance)
    allowed = None if prior is None else _allowed_levels(prior.to(images.device), prior_radius)  # (T, H, W, 48)
    part = torch.full(mask.shape, -1, dtype=torch.long, device=images.device)
    face = torch.zeros(mask.shape, dtype=torch.bool, device=images.device)
    normal = torch.zeros(*mask.shape, 3, device=images.device)
    confidence = torch.zeros(mask.shape, device=images.device)
    for t in range(images.shape[0]):  # one frame at a time: the cost volume is (H, W, 48)
        if not mask[t].any():
            continue
        frame_depth = depth[t : t + 1] if torch.is_tensor(depth) and depth.ndim == 3 else depth
        cost, nx, ny = _level_costs(images[t : t + 1], mask[t : t + 1], shading, camera, frame_depth)  # (N, 48) each
        cost = _aggregate(cost, mask[t], window)
        if allowed is not None and allowed[t].any():
            cost = cost + prior_penalty * (~allowed[t][mask[t]]).float()
        best = cost.min(-1)
        level = best.indices
        pick = level[:, None]
        facing = level % 2 == 0
        m = mask[t]
        part[t][m], face[t][m] = level // 2, facing
        normal[t][m] = _normal_from_xy(
            nx.gather(1, pick)[:, 0].clamp(-1, 1), ny.gather(1, pick)[:, 0].clamp(-1, 1), facing
        )
        confidence[t][m] = 1 - best.values / COST_CAP  # ~ share of the neighbourhood the level explains
    return DecodedMotionMap(mask, part, face, normal, confidence)


def body_mask(images: torch.Tensor, tolerance: float = BACKGROUND_TOLERANCE) -> torch.Tensor:
    """(T, H, W, 3) -> (T, H, W) bool. Body where some channel is below 1 - ``tolerance``, except blur halo:
    a pixel next to background, lighter than any drawn body pixel (``LIGHTEST_BODY``) and under
    ``HALO_FRACTION`` of the darkest pixel around it is a blend of white and body (a blurred edge), not
    body. Exact renders lose no pixel to this; a VAE-like blurred map's silhouette goes from IoU 0.885 to
    0.96 (stand-in ``arms`` motion at 192 px, ``motion_map.degrade.WAN22_VAE``)."""
    dark = 1 - images.min(-1).values  # (T, H, W)
    mask = dark > tolerance
    near_background = F.max_pool2d((~mask).float()[:, None], 3, stride=1, padding=1)[:, 0] > 0
    darkest = F.max_pool2d(dark[:, None], 3, stride=1, padding=1)[:, 0]
    return mask & ~(near_background & (dark < LIGHTEST_BODY) & (dark < HALO_FRACTION * darkest))


def levels_of(flat_images: torch.Tensor) -> torch.Tensor:
    """(T, H, W, 3) flat-shaded render -> (T, H, W) semantic level 0..47, -1 on background."""
    level = (flat_images[..., 0].float() * LEVELS).round().long() - 1
    return torch.where((flat_images < 1).any(-1), level, torch.full_like(level, -1))


def _allowed_levels(prior: torch.Tensor, radius: int) -> torch.Tensor:
    """(T, H, W) levels (-1: none) -> (T, H, W, 48) bool: the level's part is drawn within ``radius``
    pixels (either facing: a guess that is a little turned must not forbid the other side)."""
    parts = prior.clamp_min(0) // 2
    onehot = F.one_hot(parts, NUM_PARTS).float() * (prior >= 0)[..., None].float()  # (T, H, W, 24)
    size = 2 * radius + 1
    pooled = F.max_pool2d(onehot.permute(0, 3, 1, 2), size, stride=1, padding=radius)  # (T, 24, H, W)
    return (pooled.permute(0, 2, 3, 1) > 0).repeat_interleave(2, dim=-1)  # levels 2p, 2p+1 are part p


def _aggregate(cost: torch.Tensor, mask: torch.Tensor, window: int) -> torch.Tensor:
    """Mean of each level's cost over the body pixels of a ``window`` x ``window`` neighbourhood.

    cost (N, 48) on the N body pixels of ``mask`` (H, W) -> (N, 48). A part is a region, so its
    level explains a whole neighbourhood, while a wrong level matches only along thin curves."""
    if window == 1:
        return cost
    h, w = mask.shape
    dense = cost.new_zeros(h, w, cost.shape[1] + 1)
    dense[mask] = torch.cat([cost.clamp(max=COST_CAP), cost.new_ones(cost.shape[0], 1)], 1)
    pooled = F.avg_pool2d(dense.permute(2, 0, 1)[None], window, stride=1, padding=window // 2, count_include_pad=True)[
        0
    ]
    pooled = pooled.permute(1, 2, 0)[mask]  # (N, 49)
    return pooled[:, :-1] / pooled[:, -1:].clamp_min(1e-6)


def _level_costs(images, mask, shading, camera, depth):
    """Per body pixel and semantic level: how badly the level explains the pixel, in colour units
    (about the residual of the semantic channel, so 8-bit rounding or VAE noise moves every level's
    cost by about the same amount), and the normal (nx, ny) the level implies. (N, 48) each."""
    pix = images[mask]  # (N, 3)
    sem_levels = torch.arange(1, LEVELS + 1, device=images.device, dtype=torch.float32) / LEVELS  # (48,)
    if shading == "flat":
        cost = (pix[:, :1] - sem_levels).abs()
        return cost, (2 * pix[:, 2:3] - 1).expand_as(cost), (2 * pix[:, 1:2] - 1).expand_as(cost)
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
    return cost * sem_levels, nx, ny  # shading-factor units -> colour units of the semantic channel
