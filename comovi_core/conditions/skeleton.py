"""COCO-18 skeleton pictures in the OpenPose / DWPose look (as ControlNet's and comfyui_controlnet_aux's drawers make).

On black, limb k joins keypoints ``LIMBS[k]`` as a filled ellipse (semi-axes: half the limb's length and
``stick_width``) in 0.6 x ``COLORS[k]``, the limbs in ``LIMBS`` order, each over the ones before; then every kept
keypoint k is a filled circle of ``keypoint_radius`` in ``COLORS[k]``, in keypoint order. Only the first 17 limbs
of OpenPose's list are drawn (its last two, shoulder to ear, never are). A limb is drawn when both its keypoints
are kept (``keypoints.PoseKeypoints.confidence``).

Unlike the OpenCV drawers, which round centres to whole pixels and draw polygons, a pixel is painted when its
centre (c + 0.5, r + 0.5) lies inside the exact ellipse or circle, so a keypoint's circle is centred on its
projected point (to well under a pixel).

Line width scales with the image as comfyui_controlnet_aux's ``xinsr_stick_scaling`` does: ``stick_width`` = 4 px
times 1 below 500 px on the longer side, else min(2 + longer side // 1000, 7) (3 at 1280); circles keep a radius of
4 px, as in those drawers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import CoMoViError
from .keypoints import PoseKeypoints

# OpenPose's limb sequence in COCO-18 keypoint indices (0-based), the 17 drawn limbs
LIMBS: tuple[tuple[int, int], ...] = (
    (1, 2),  # neck - right shoulder
    (1, 5),  # neck - left shoulder
    (2, 3),  # right upper arm
    (3, 4),  # right forearm
    (5, 6),  # left upper arm
    (6, 7),  # left forearm
    (1, 8),  # neck - right hip
    (8, 9),  # right thigh
    (9, 10),  # right shin
    (1, 11),  # neck - left hip
    (11, 12),  # left thigh
    (12, 13),  # left shin
    (1, 0),  # neck - nose
    (0, 14),  # nose - right eye
    (14, 16),  # right eye - right ear
    (0, 15),  # nose - left eye
    (15, 17),  # left eye - left ear
)
# OpenPose's 18 colours (RGB), of keypoint k and of limb k
COLORS: tuple[tuple[int, int, int], ...] = (
    (255, 0, 0),
    (255, 85, 0),
    (255, 170, 0),
    (255, 255, 0),
    (170, 255, 0),
    (85, 255, 0),
    (0, 255, 0),
    (0, 255, 85),
    (0, 255, 170),
    (0, 255, 255),
    (0, 170, 255),
    (0, 85, 255),
    (0, 0, 255),
    (85, 0, 255),
    (170, 0, 255),
    (255, 0, 255),
    (255, 0, 170),
    (255, 0, 85),
)
LIMB_ALPHA = 0.6  # limbs are drawn in 0.6 x their colour, the look of OpenPose's 0.6 blend on black
STICK_WIDTH = 4.0  # pixels, the limb ellipse's semi-minor axis before scaling
KEYPOINT_RADIUS = 4.0  # pixels


@dataclass(frozen=True)
class SkeletonStyle:
    stick_width: float = STICK_WIDTH  # semi-minor axis of each limb's ellipse, pixels
    keypoint_radius: float = KEYPOINT_RADIUS  # radius of each keypoint's circle, pixels


def stick_scale(height: int, width: int) -> int:
    """comfyui_controlnet_aux's ``xinsr_stick_scaling`` factor for an image of (height, width)."""
    longer = max(height, width)
    return 1 if longer < 500 else min(2 + longer // 1000, 7)


def skeleton_style(height: int, width: int, line_scale: float = 0.0) -> SkeletonStyle:
    """The style for an image of (height, width): limbs 4 px x ``line_scale`` (0: ``stick_scale``), circles 4 px."""
    if not np.isfinite(line_scale) or line_scale < 0:
        raise CoMoViError(f"line_scale must be 0 (by image size) or a positive number, got {line_scale}")
    return SkeletonStyle(STICK_WIDTH * (line_scale or stick_scale(height, width)), KEYPOINT_RADIUS)


def limb_color(limb: int) -> tuple[int, int, int]:
    """The drawn colour of limb ``limb``: 0.6 x its colour, truncated as the OpenCV drawers do."""
    return tuple(int(c * LIMB_ALPHA) for c in COLORS[limb])


def _paint(canvas: np.ndarray, centre: np.ndarray, axis: np.ndarray, half: tuple[float, float], color) -> None:
    """Fill the pixels of ``canvas`` (H, W, 3) whose centres lie in the ellipse of ``centre`` (u, v), unit major
    ``axis`` and semi-axes ``half`` = (along, across)."""
    reach = max(half)
    height, width = canvas.shape[:2]
    c0, c1 = max(int(np.floor(centre[0] - reach)), 0), min(int(np.ceil(centre[0] + reach)), width)
    r0, r1 = max(int(np.floor(centre[1] - reach)), 0), min(int(np.ceil(centre[1] + reach)), height)
    if c0 >= c1 or r0 >= r1:
        return
    du = np.arange(c0, c1) + 0.5 - centre[0]  # (w,)
    dv = np.arange(r0, r1)[:, None] + 0.5 - centre[1]  # (h, 1)
    along = du * axis[0] + dv * axis[1]
    across = dv * axis[0] - du * axis[1]
    inside = (along / half[0]) ** 2 + (across / half[1]) ** 2 <= 1.0
    canvas[r0:r1, c0:c1][inside] = color


def draw_frame(points: np.ndarray, keep: np.ndarray, height: int, width: int, style: SkeletonStyle) -> np.ndarray:
    """One skeleton picture: points (18, 2) image points, keep (18,) bool -> (H, W, 3) uint8 RGB."""
    canvas = np.zeros((height, width, 3), np.uint8)
    for limb, (a, b) in enumerate(LIMBS):
        if not (keep[a] and keep[b]):
            continue
        delta = points[b] - points[a]
        length = float(np.hypot(*delta))
        axis = delta / length if length > 0 else np.array([1.0, 0.0])
        half = (max(length / 2, 0.5), style.stick_width)  # a limb shorter than a pixel still shows as a dot
        _paint(canvas, (points[a] + points[b]) / 2, axis, half, limb_color(limb))
    radius = style.keypoint_radius
    for k in np.nonzero(keep)[0]:
        _paint(canvas, points[k], np.array([1.0, 0.0]), (radius, radius), COLORS[k])
    return canvas


def draw_skeleton(keypoints: PoseKeypoints, style: SkeletonStyle | None = None) -> torch.Tensor:
    """Skeleton pictures of every frame: (T, H, W, 3) uint8 RGB at ``keypoints.image_size``."""
    height, width = keypoints.image_size
    style = style or skeleton_style(height, width)
    points = keypoints.points.detach().cpu().double().numpy()
    keep = keypoints.confidence.detach().cpu().numpy() > 0
    frames = [draw_frame(p, k, height, width, style) for p, k in zip(points, keep)]
    return torch.from_numpy(np.stack(frames)) if frames else torch.zeros((0, height, width, 3), dtype=torch.uint8)
