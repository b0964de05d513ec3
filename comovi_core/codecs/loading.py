"""Load the codecs: the VAE and the text encoder, for inference, training and cache preparation alike.

The tiny preset's are random ones made from a seed (``codecs.tiny``); any other preset's are
the Wan2.2 VAE (fp32, any layout ``vae_files.load_wan22_vae`` reads) and umT5 (the base Wan2.2-TI2V-5B diffusers
folder's text_encoder/ + tokenizer/).
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import CoMoViError

TINY = "tiny"


def load_vae(path: Path | None, *, preset: str | None = None, seed: int = 0, device=None):
    """The VAE at ``path`` (a diffusers folder, its vae/ folder, or the original single file) in fp32, moved to
    ``device`` when one is given; for ``preset`` tiny, the tiny VAE made from ``seed`` (on the CPU)."""
    if preset == TINY:
        from .tiny import tiny_vae

        return tiny_vae(seed + 3)
    from .vae_files import load_wan22_vae

    vae = load_wan22_vae(path, torch.float32)
    return vae if device is None else vae.to(device)


def load_text_encoder(
    base: Path | None,
    *,
    preset: str | None = None,
    seed: int = 0,
    device="cpu",
    dtype: torch.dtype = torch.bfloat16,
    text_len: int | None = None,
):
    """umT5 from the base folder ``base`` on ``device`` in ``dtype``, padding prompts to ``text_len`` tokens (default:
    the preset's); for ``preset`` tiny, the tiny text encoder made from ``seed``."""
    from ..model.config import get_config

    if preset == TINY:
        from .text import TinyTextEncoder

        config = get_config(TINY)
        return TinyTextEncoder(config.text_dim, config.text_len, seed)
    from .text import UMT5TextEncoder

    return UMT5TextEncoder(base, device, dtype, text_len or get_config(preset).text_len)


def load_codecs(preset: str, base: Path | None, *, vae_path: Path | None = None, seed: int = 0, device="cpu"):
    """(VAE, text encoder) of ``preset`` on ``device``: tiny's from ``seed``, else the Wan2.2 VAE (``vae_path``, or
    the base folder's vae/) and umT5 in bf16 from the base folder ``base``."""
    if preset == TINY:
        return load_vae(None, preset=preset, seed=seed), load_text_encoder(None, preset=preset, seed=seed)
    if base is None:
        raise CoMoViError(
            "the VAE and the text encoder come from the base Wan2.2-TI2V-5B diffusers folder: give it "
            "(models/Wan2.2-TI2V-5B-Diffusers)"
        )
    vae = load_vae(vae_path or base, preset=preset, device=device)
    return vae, load_text_encoder(base, preset=preset, device=device)
