"""Live previews while sampling: the RGB and motion-map estimates side by side, per ComfyUI's preview setting."""

from __future__ import annotations

import comfy.latent_formats
import latent_preview
import torch
from PIL import Image

from . import host


def wan22_previewer():
    """ComfyUI's previewer for Wan2.2 latents (latent-to-RGB factors, or its tiny video decoder when installed
    and chosen); None when the user turned previews off."""
    return latent_preview.get_previewer(host.torch_device(), comfy.latent_formats.Wan22())


def side_by_side_preview(previewer, rgb_x0: torch.Tensor, motion_x0: torch.Tensor):
    """(B, 48, f, h, w) clean estimates of both branches -> ComfyUI's preview tuple of their middle generated
    latent frame (frame 0 is the given start frame), RGB left, motion map right; None without a previewer."""
    if previewer is None:
        return None
    frame = min(max(1, rgb_x0.shape[2] // 2), rgb_x0.shape[2] - 1)
    left, right = (previewer.decode_latent_to_preview(x[:1, :, frame : frame + 1].float()) for x in (rgb_x0, motion_x0))
    both = Image.new("RGB", (left.width + right.width, max(left.height, right.height)), "white")
    both.paste(left, (0, 0))
    both.paste(right, (left.width, 0))
    return "JPEG", both, latent_preview.MAX_PREVIEW_RESOLUTION
