"""Overlay a rendered body on video frames: the quick visual check that a 3D motion matches its video."""

from __future__ import annotations

import torch

from ..errors import CoMoViError
from .render import iter_motion


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


def overlay_motion(body, motion, video: torch.Tensor, opacity: float = 0.6, backend: str = "auto") -> torch.Tensor:
    """A ``SMPLMotion`` posed with ``body`` and drawn (motion-map colours, comovi_v1 shading) over ``video``
    (T, H, W, 3) in [0, 1] -> (min(T, motion frames), H, W, 3) on the CPU. The motion's camera is fitted to the
    video's size as the sampler pads a picture (``PinholeCamera.padded_to``); rendering runs on the body's device."""
    camera = motion.camera.padded_to(video.shape[1], video.shape[2])
    with torch.inference_mode():
        chunks = list(iter_motion(body, motion, camera, "comovi_v1", backend, frames=video.shape[0]))
    rendered = torch.cat([c.images.cpu() for c in chunks])
    mask = torch.cat([c.mask.cpu() for c in chunks])
    return overlay(video.cpu(), rendered, mask, opacity)
