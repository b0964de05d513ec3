"""ComfyUI VAE and CONDITIONING seen as core types (a codec, an embeddings tensor)."""

from __future__ import annotations

import logging

import torch

from ..comovi_core.codecs.vae import PixelCodec
from ..comovi_core.codecs.vae_files import WAN22_LATENTS_MEAN, WAN22_LATENTS_STD
from ..comovi_core.errors import CoMoViError

log = logging.getLogger(__name__)


def vae_codec(vae) -> PixelCodec:
    """ComfyUI's VAE (encode: (T, H, W, 3) in [0, 1] -> raw latents; decode: -> (1, T, H, W, 3)) with Wan2.2
    statistics."""
    channels = getattr(vae, "latent_channels", len(WAN22_LATENTS_MEAN))
    if channels != len(WAN22_LATENTS_MEAN):
        raise CoMoViError(
            f"the connected VAE has {channels} latent channels: CoMoVi needs the Wan2.2 VAE "
            "(48 channels): load wan2.2_vae.safetensors with Load VAE"
        )

    def decode(raw):
        out = vae.decode(raw)
        return out.reshape((-1,) + tuple(out.shape[-3:]))

    return PixelCodec(vae.encode, decode, WAN22_LATENTS_MEAN, WAN22_LATENTS_STD)


def conditioning_embeds(conditioning, what: str) -> torch.Tensor:
    """CONDITIONING ([[embeds (1, L, D), options], ...]) -> (1, L, D); only the first entry is used."""
    if not conditioning:
        raise CoMoViError(f"the {what} CONDITIONING is empty: connect a CLIP Text Encode (umT5-XXL, type 'wan')")
    if len(conditioning) > 1:
        log.warning("%s CONDITIONING has %d entries: CoMoVi uses the first one only", what, len(conditioning))
    return conditioning[0][0][:1]
