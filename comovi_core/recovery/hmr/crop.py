"""Person box -> the square crop HMR 2.0 expects, and its crop camera back to the full image.

As 4D-Humans' ViTDetDataset: the box grows to the 192:256 (w:h) aspect, the crop is the square of the box's
longer side around its centre, resampled to ``image_size`` pixels (bilinear, black outside the picture,
Gaussian pre-blur when shrinking by more than 2.2x), then normalised with the ImageNet mean and std.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ...errors import CoMoViError
from .config import HMR2Config

MIN_BOX_SIDE = 8.0  # pixels; a smaller person box holds nothing to estimate


def box_from_points(points: np.ndarray, height: int, width: int, pad: float = 1.2) -> np.ndarray:
    """(K, 3) keypoints (x, y, confidence) in pixels -> (4,) x0, y0, x1, y1: the confident points' box grown by
    ``pad`` (keypoints stop at the joints; the head top and feet lie beyond them), clipped to the image."""
    seen = points[points[:, 2] > 0.1, :2]
    if len(seen) < 2:
        raise CoMoViError(
            "fewer than 2 confident keypoints: cannot place a person box; give a MASK or let the "
            "detector find the person"
        )
    (x0, y0), (x1, y1) = seen.min(0), seen.max(0)
    cx, cy, half_w, half_h = (x0 + x1) / 2, (y0 + y1) / 2, pad * (x1 - x0) / 2, pad * (y1 - y0) / 2
    return _checked_box(
        np.array(
            [max(0, cx - half_w), max(0, cy - half_h), min(width, cx + half_w), min(height, cy + half_h)], np.float32
        )
    )


def box_from_mask(mask: np.ndarray | torch.Tensor) -> np.ndarray:
    """(H, W) mask (nonzero = person) -> (4,) x0, y0, x1, y1 of its pixels."""
    mask = np.asarray(torch.as_tensor(mask).detach().cpu().float().numpy()) > 0.5
    if mask.ndim != 2 or not mask.any():
        raise CoMoViError("the MASK is empty (or not one H x W image): paint the person, or leave the mask out")
    rows, cols = np.nonzero(mask.any(1))[0], np.nonzero(mask.any(0))[0]
    return _checked_box(np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], np.float32))


def _checked_box(box: np.ndarray) -> np.ndarray:
    if min(box[2] - box[0], box[3] - box[1]) < MIN_BOX_SIDE:
        raise CoMoViError(
            f"the person box {box.round(1).tolist()} is under {MIN_BOX_SIDE:.0f} pixels on a side: "
            "is the person in the picture?"
        )
    return box


def square_window(box: np.ndarray, aspect_wh: tuple[float, float] = (192, 256)) -> tuple[float, float, float]:
    """(4,) box -> (centre x, centre y, side) of the square crop: the box grown to ``aspect_wh``, longer side."""
    w, h = float(box[2] - box[0]), float(box[3] - box[1])
    w_t, h_t = aspect_wh
    if h / w < h_t / w_t:
        h = max(w * h_t / w_t, h)
    else:
        w = max(h * w_t / h_t, w)
    return float(box[0] + box[2]) / 2, float(box[1] + box[3]) / 2, max(w, h)


def _gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """(3, H, W) -> blurred with a separable Gaussian truncated at 4 sigma, the edge pixels repeated outside the
    picture: as the reference's ``skimage.filters.gaussian`` (scipy's ``mode="nearest"``, ``truncate=4``)."""
    radius = max(1, int(4 * sigma + 0.5))
    x = torch.arange(-radius, radius + 1, dtype=image.dtype)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    kernel = kernel / kernel.sum()
    out = image[None]
    for shape in ((1, 1, 1, -1), (1, 1, -1, 1)):
        k = kernel.reshape(shape).expand(3, 1, *kernel.reshape(shape).shape[2:])
        pad = (radius, radius, 0, 0) if shape[-1] == -1 else (0, 0, radius, radius)
        out = F.conv2d(F.pad(out, pad, mode="replicate"), k, groups=3)
    return out[0]


def crop_person(
    image: torch.Tensor, window: tuple[float, float, float], config: HMR2Config, antialias: bool = True
) -> torch.Tensor:
    """(H, W, 3) RGB in [0, 1] -> (3, S, S) normalised crop of the square ``window`` (cx, cy, side), S = image_size.
    ``antialias``: blur before a strong shrink, as HMR 2.0's demo (CameraHMR's samples the picture directly)."""
    cx, cy, side = window
    s = config.image_size
    img = image.permute(2, 0, 1).float()  # (3, H, W)
    shrink = side / s / 2.0
    if antialias and shrink > 1.1:
        img = _gaussian_blur(img, (shrink - 1) / 2)
    h, w = img.shape[1:]
    j = torch.arange(s, dtype=torch.float32)
    xs = cx + (j - s / 2) * side / s  # source pixel coordinate (pixel centres at integers) of crop pixel j
    ys = cy + (j - s / 2) * side / s
    grid = torch.stack(torch.meshgrid((ys + 0.5) / h * 2 - 1, (xs + 0.5) / w * 2 - 1, indexing="ij")[::-1], -1)
    crop = F.grid_sample(img[None], grid[None], mode="bilinear", padding_mode="zeros", align_corners=False)[0]
    mean, std = torch.tensor(config.image_mean)[:, None, None], torch.tensor(config.image_std)[:, None, None]
    return (crop - mean) / std


def crop_camera_to_full(
    cam: torch.Tensor, window: tuple[float, float, float], principal_point: tuple[float, float], focal_length: float
) -> torch.Tensor:
    """(3,) weak-perspective crop camera (s, tx, ty) -> (3,) full-image translation (metres) for a pinhole of
    ``focal_length`` pixels: the body keeps its place and size in the picture, its depth follows the focal."""
    cx, cy, side = window
    scale = side * cam[0] + 1e-9
    if not math.isfinite(float(scale)) or float(scale) <= 0:
        raise CoMoViError(
            f"the estimator gave a non-positive camera scale ({float(cam[0]):.3g}): the crop holds no "
            "recognisable person; give a tighter box, a mask or keypoints"
        )
    px, py = principal_point
    return torch.stack([2 * (cx - px) / scale + cam[1], 2 * (cy - py) / scale + cam[2], 2 * focal_length / scale])
