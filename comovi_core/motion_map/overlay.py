"""Overlay a rendered body on video frames: the quick visual check that a 3D motion matches its video."""

from __future__ import annotations

import torch

from ..errors import CoMoViError


def overlay(frames: torch.Tensor, rendered: torch.Tensor, mask: torch.Tensor, opacity: float = 0.6) -> torch.Tensor:
    """frames, rendered (T, H, W, 3) in [0, 1], mask (T, H, W) bool -> frames with ``rendered`` blended in on ``mask``.

    Frames beyond the rendered ones (or the reverse) are cut to the shorter length."""
    if frames.shape[1:] != rendered.shape[1:]:
        raise CoMoViError(
            f"the video is {tuple(frames.shape[1:3])} but the body was rendered at {tuple(rendered.shape[1:3])}"
        )
    if not 0.0 <= opacity <= 1.0:
        raise CoMoViError(f"opacity must be in [0, 1], got {opacity}")
    n = min(frames.shape[0], rendered.shape[0])
    alpha = mask[:n, ..., None].to(frames.dtype) * opacity
    return frames[:n] * (1 - alpha) + rendered[:n].to(frames.dtype) * alpha
