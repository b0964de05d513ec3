"""The ViT backbone of HMR 2.0: ViTPose's plain ViT, built from transformers' VitPose modules.

ViTPose differs from a classic ViT in two places, both in transformers' ``vitpose_backbone``: the patch
convolution pads 2 pixels, and the class-token position embedding is added to every patch token (there is no
class token). HMR 2.0 uses the image tokens after a final LayerNorm.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import HMR2Config


def vitpose_config(config: HMR2Config):
    """transformers' ``VitPoseBackboneConfig`` for our config (eps 1e-6, exact GELU, qkv bias, one expert)."""
    from transformers import VitPoseBackboneConfig

    vit = VitPoseBackboneConfig(
        image_size=[config.image_size, config.crop_width],
        patch_size=config.patch_size,
        hidden_size=config.embed_dim,
        num_hidden_layers=config.depth,
        num_attention_heads=config.num_heads,
        mlp_ratio=config.mlp_ratio,
        qkv_bias=True,
        layer_norm_eps=1e-6,
        hidden_act="gelu",
        num_experts=1,
    )
    vit._attn_implementation = "sdpa"
    return vit


class ViTBackbone(nn.Module):
    """(B, 3, image_size, crop_width) normalised RGB -> (B, rows * columns, embed_dim) image tokens."""

    def __init__(self, config: HMR2Config):
        super().__init__()
        from transformers.models.vitpose_backbone.modeling_vitpose_backbone import (
            VitPoseBackboneEmbeddings,
            VitPoseBackboneLayer,
        )

        vit = vitpose_config(config)
        self.embeddings = VitPoseBackboneEmbeddings(vit)
        self.layers = nn.ModuleList(VitPoseBackboneLayer(vit) for _ in range(config.depth))
        self.layernorm = nn.LayerNorm(config.embed_dim, eps=1e-6)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.embeddings(pixels)  # (B, N, C) patches + position
        for layer in self.layers:
            x = layer(x)
        return self.layernorm(x)  # (B, N, C)
