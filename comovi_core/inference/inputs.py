"""Inputs of the co-generation loop: size rules, the padded start image, the start motion map."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from ..errors import CoMoViError


def check_video_size(height: int, width: int, num_frames: int) -> None:
    """H, W multiples of 32; frames = 4k+1 (Wan2.2 VAE: 16x spatial, 4x temporal, patch 2)."""
    if height % 32 or width % 32 or height < 32 or width < 32:
        raise CoMoViError(
            f"height and width must be positive multiples of 32, got {height}x{width}; e.g. 704x1280 or 480x832"
        )
    if num_frames < 5 or (num_frames - 1) % 4:
        lower = max(5, (num_frames - 1) // 4 * 4 + 1)
        raise CoMoViError(
            f"the number of frames must be 4k+1 and at least 5 (5, 9, ..., 81, ...), got {num_frames}; try "
            f"{lower} or {lower + 4}"
        )


def check_steps(steps: int) -> None:
    if steps < 1:
        raise CoMoViError(f"the number of denoising steps must be at least 1, got {steps}; the release uses 50")


def pad_to_aspect(image: Image.Image, height: int, width: int) -> torch.Tensor:
    """Pad with white to the target aspect (centred), resize to (H, W): (3, H, W) in [0, 1]. As the release."""
    target = width / height
    w, h = image.size
    if w / h < target:
        new_w, new_h = round(h * target), h
    else:
        new_w, new_h = w, round(w / target)
    canvas = Image.new("RGB", (new_w, new_h), (255, 255, 255))
    canvas.paste(image, ((new_w - w) // 2, (new_h - h) // 2))
    canvas = canvas.resize((width, height), Image.Resampling.BICUBIC)
    return torch.from_numpy(np.asarray(canvas, dtype=np.float32) / 255.0).permute(2, 0, 1)
