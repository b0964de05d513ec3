"""The offline ``tiny`` preset: every component built in memory with small random weights.

Not a model of anything: it exercises the whole path (text, conditioning, joint loop, 3D head, decode,
files) in seconds on a CPU, for tests and for the README's first command on a fresh machine.
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKLWan

from ..codecs.text import TinyTextEncoder
from ..model.config import get_config
from ..model.loading import build_model


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


def tiny_transformer(seed: int = 0):
    """The ``tiny`` config with random weights everywhere, coupling and 3D head included."""
    torch.manual_seed(seed)
    model = build_model(get_config("tiny"), "cpu").eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.randn_like(p) * 0.05 + (1.0 if "norm_" in name else 0.0))
    return model


def tiny_components(seed: int = 0) -> dict:
    cfg = get_config("tiny")
    return dict(
        transformer=tiny_transformer(seed),
        vae=tiny_vae(seed + 3),
        text_encoder=TinyTextEncoder(cfg.text_dim, cfg.text_len, seed),
    )
