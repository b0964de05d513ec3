"""Wan2.2 VAE helpers: normalised encode/decode of videos.

The pipeline accepts two kinds of VAE:
- a diffusers ``AutoencoderKLWan`` (anything with ``encode(x).latent_dist.mode()``, ``decode(z).sample``
  and ``config.latents_mean / latents_std``);
- a codec: any object with ``encode_video`` / ``decode_video`` in normalised latent space, such as
  ``PixelCodec`` around a host's own VAE (ComfyUI's VAE takes and gives (T, H, W, 3) pixels in [0, 1]
  and raw latents).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from ..errors import CoMoViError


def latent_stats(vae, device, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel (mean, std), each (1, C, 1, 1, 1)."""
    mean = torch.tensor(vae.config.latents_mean, device=device, dtype=dtype).view(1, -1, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std, device=device, dtype=dtype).view(1, -1, 1, 1, 1)
    return mean, std


class PixelCodec:
    """A VAE given as two pixel functions plus the latent statistics.

    ``encode_pixels``: (T, H, W, 3) in [0, 1] -> raw latents (1, C, f, h, w);
    ``decode_pixels``: raw latents (1, C, f, h, w) -> (T, H, W, 3) in [0, 1].
    """

    def __init__(
        self,
        encode_pixels: Callable,
        decode_pixels: Callable,
        latents_mean: Sequence[float],
        latents_std: Sequence[float],
    ):
        self.encode_pixels, self.decode_pixels = encode_pixels, decode_pixels
        self.mean = torch.tensor(latents_mean, dtype=torch.float32).view(1, -1, 1, 1, 1)
        self.std = torch.tensor(latents_std, dtype=torch.float32).view(1, -1, 1, 1, 1)

    def encode_video(self, frames: torch.Tensor) -> torch.Tensor:
        """(1, 3, F, H, W) in [-1, 1] -> (1, C, f, h, w) normalised latents."""
        pixels = ((frames[0].float().cpu() + 1) / 2).permute(1, 2, 3, 0)  # (F, H, W, 3)
        latents = self.encode_pixels(pixels).float()
        if latents.shape[1] != self.mean.shape[1]:
            raise CoMoViError(
                f"the VAE gives {latents.shape[1]} latent channels; CoMoVi needs the Wan2.2 VAE "
                f"({self.mean.shape[1]} channels, wan2.2_vae.safetensors)"
            )
        return (latents.to(frames.device) - self.mean.to(frames.device)) / self.std.to(frames.device)

    def decode_video(self, latents: torch.Tensor) -> torch.Tensor:
        """(1, C, f, h, w) normalised latents -> (1, 3, F, H, W) in [-1, 1]."""
        raw = latents.float().cpu() * self.std + self.mean
        pixels = self.decode_pixels(raw).float()  # (F, H, W, 3) in [0, 1]
        return (pixels.permute(3, 0, 1, 2)[None] * 2 - 1).clamp(-1, 1).to(latents.device)


def encode_frames(vae, frames: torch.Tensor) -> torch.Tensor:
    """(B, 3, F, H, W) in [-1, 1] -> (B, C, f, H/16, W/16) normalised latents (distribution mode)."""
    if hasattr(vae, "encode_video"):
        return vae.encode_video(frames)
    vae_dtype = next(vae.parameters()).dtype
    latents = vae.encode(frames.to(vae_dtype)).latent_dist.mode().float()
    mean, std = latent_stats(vae, latents.device)
    return (latents - mean) / std


def decode_latents(vae, latents: torch.Tensor) -> torch.Tensor:
    """(B, C, f, h, w) normalised latents -> (B, 3, F, H, W) in [-1, 1]."""
    if hasattr(vae, "decode_video"):
        return vae.decode_video(latents)
    mean, std = latent_stats(vae, latents.device)
    vae_dtype = next(vae.parameters()).dtype
    return vae.decode((latents * std + mean).to(vae_dtype)).sample.float().clamp(-1, 1)
