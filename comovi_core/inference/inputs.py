"""Inputs of the co-generation loop: the rules a generation request must meet (``check_inputs``), the start image
read and padded to the target aspect."""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image

from ..errors import CoMoViError

NAMES = {"guidance": "guidance", "shift": "shift", "prompt": "the prompt"}  # how messages name these by default


def check_inputs(
    *,
    height: int,
    width: int,
    num_frames: int,
    steps: int,
    guidance: float,
    shift: float,
    prompt: str | None,
    prompt_embeds: torch.Tensor | None = None,
    mode: str = "cogenerate",
    given=None,
    names: dict[str, str] | None = None,
) -> None:
    """Refuse a generation request the model cannot run, before any work; raises ``CoMoViError``.

    The rules: ``height``/``width`` positive multiples of 32 and ``num_frames`` = 4k+1 >= 5 (``check_video_size``);
    ``steps`` >= 1; ``guidance`` finite and >= 0 (<= 1: no classifier-free guidance); ``shift`` finite and > 0; a
    non-blank ``prompt`` unless ``prompt_embeds`` are given; ``mode`` one of ``sampling.GENERATION_MODES``; in
    ``motion_to_video`` ``given`` a ``SMPLMotion`` of at least ``num_frames`` frames, in ``video_to_motion`` a video
    tensor (T >= ``num_frames``, height, width, 3) (``given`` is not looked at in ``cogenerate``).
    ``names`` says how the caller's users call ``guidance``, ``shift`` and ``prompt`` (e.g. ``{"shift": "--shift"}``
    for a command line); the messages use those names.
    """
    from ..body.motion_file import SMPLMotion
    from .sampling import GENERATION_MODES

    names = {**NAMES, **(names or {})}
    check_video_size(height, width, num_frames)
    if steps < 1:
        raise CoMoViError(f"the number of denoising steps must be at least 1, got {steps}; the release uses 50")
    if not (guidance >= 0 and math.isfinite(guidance)):
        raise CoMoViError(f"{names['guidance']} must be 0 or more, got {guidance}; e.g. 6 (1: no guidance)")
    if not (shift > 0 and math.isfinite(shift)):
        raise CoMoViError(f"{names['shift']} must be above 0, got {shift}; the release uses 5")
    if (prompt is None or not prompt.strip()) and prompt_embeds is None:
        raise CoMoViError(
            f"{names['prompt']} is empty: describe the motion, e.g. 'a woman does a cartwheel on a beach'"
        )
    if mode not in GENERATION_MODES:
        raise CoMoViError(f"unknown mode {mode!r}; choose one of {list(GENERATION_MODES)}")
    if mode == "motion_to_video" and not (isinstance(given, SMPLMotion) and given.num_frames >= num_frames):
        raise CoMoViError(f"motion_to_video needs a SMPL motion of at least {num_frames} frames")
    if mode == "video_to_motion" and not (
        torch.is_tensor(given) and given.shape[0] >= num_frames and tuple(given.shape[1:3]) == (height, width)
    ):
        got = tuple(given.shape) if torch.is_tensor(given) else type(given).__name__
        raise CoMoViError(
            f"video_to_motion needs a video tensor (T >= {num_frames}, {height}, {width}, 3) in [0, 1], got {got}: "
            f"give at least {num_frames} frames, resized/padded to {width}x{height}"
        )


def check_video_size(height: int, width: int, num_frames: int) -> None:
    """H, W multiples of 32; frames = 4k+1 (Wan2.2 VAE: 16x spatial, 4x temporal, patch 2). The size rules of
    ``check_inputs``, on their own for callers that only set a video size (training)."""
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
