"""The offline ``tiny`` preset: every component built in memory with small random weights.

Not a model of anything: it exercises the whole path (text, conditioning, joint loop, 3D head, decode,
files) in seconds on a CPU, for tests and for the README's first command on a fresh machine.
"""

from __future__ import annotations

import torch

from ..codecs.text import TinyTextEncoder
from ..codecs.tiny import tiny_vae
from ..model.config import get_config
from ..model.loading import build_model


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
