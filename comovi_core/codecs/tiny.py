"""The tiny preset's VAE: Wan2.2's shape with small random weights (a test and demo stand-in, not a codec of
anything)."""

from __future__ import annotations

import torch
from diffusers import AutoencoderKLWan


def tiny_vae(seed: int = 3, latents_mean: float = 0.0, latents_std: float = 1.0) -> AutoencoderKLWan:
    """A Wan2.2-shaped VAE (z_dim 48, 16x spatial, 4x temporal, patch 2) with 8 base channels.

    ``latents_mean`` / ``latents_std``: the latent statistics of every channel (the config's normalisation)."""
    torch.manual_seed(seed)
    return AutoencoderKLWan(
        base_dim=8,
        z_dim=48,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
        is_residual=True,
        in_channels=12,
        out_channels=12,
        patch_size=2,
        scale_factor_spatial=16,
        scale_factor_temporal=4,
        latents_mean=[latents_mean] * 48,
        latents_std=[latents_std] * 48,
    ).eval()
