"""HMR 2.0 (Goel et al., 4D-Humans, MIT licence): a square person crop -> SMPL pose, shape, crop camera."""

from __future__ import annotations

import torch
from torch import nn

from .backbone import ViTBackbone
from .config import HMR2Config
from .head import HMR2Output, HMRDecoderHead


class HMR2(nn.Module):
    """(B, 3, S, S) crop, RGB normalised with ``config.image_mean``/``image_std`` -> ``HMR2Output``.

    The backbone sees the middle ``crop_width`` columns (a 256 x 192 portrait window for the released model)."""

    def __init__(self, config: HMR2Config):
        super().__init__()
        self.config = config
        self.backbone = ViTBackbone(config)
        self.head = HMRDecoderHead(config)

    def forward(self, crop: torch.Tensor) -> HMR2Output:
        margin = (self.config.image_size - self.config.crop_width) // 2
        tokens = self.backbone(crop[..., margin : crop.shape[-1] - margin])  # (B, N, C)
        return self.head(tokens)
