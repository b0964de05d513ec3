"""Wan2.2 VAE helpers (diffusers ``AutoencoderKLWan``): normalised encode/decode of frame batches.

Any object with ``encode(x).latent_dist.mode()``, ``decode(z).sample`` and ``config.latents_mean /
latents_std`` works, so ComfyUI's VAE can stand in through a small adapter.
"""

from __future__ import annotations

import torch


def latent_stats(vae, device, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel (mean, std), each (1, C, 1, 1, 1)."""
    mean = torch.tensor(vae.config.latents_mean, device=device, dtype=dtype).view(1, -1, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std, device=device, dtype=dtype).view(1, -1, 1, 1, 1)
    return mean, std


def encode_frames(vae, frames: torch.Tensor) -> torch.Tensor:
    """(B, 3, F, H, W) in [-1, 1] -> (B, C, f, H/16, W/16) normalised latents (distribution mode)."""
    vae_dtype = next(vae.parameters()).dtype
    latents = vae.encode(frames.to(vae_dtype)).latent_dist.mode().float()
    mean, std = latent_stats(vae, latents.device)
    return (latents - mean) / std


def decode_latents(vae, latents: torch.Tensor) -> torch.Tensor:
    """(B, C, f, h, w) normalised latents -> (B, 3, F, H, W) in [-1, 1]."""
    mean, std = latent_stats(vae, latents.device)
    vae_dtype = next(vae.parameters()).dtype
    return vae.decode((latents * std + mean).to(vae_dtype)).sample.float().clamp(-1, 1)
