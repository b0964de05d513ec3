"""The 3D-2D cross-attention head (paper §3.3, release ``predict_smpl``): SMPL poses from DiT features.

Queries are the start pose (24 joints x 6D) plus a learned per-frame embedding, one query per output
frame after the first; each decoder layer runs self-attention over the pose queries, frame-local
cross-attention to the fused DiT features, and a feed-forward; the output is a residual on the start
pose. The 4 pose frames of latent frame j (j >= 1) attend only to latent frame j's tokens; latent
frame 0 (the given start frame) is never a key. Works for any frame count 4k+1: the release learned
80 frame embeddings; other lengths resample that table linearly along time (see ``frame_embedding``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.models.attention import FeedForward
from diffusers.models.transformers.transformer_wan import WanAttention, WanAttnProcessor
from torch import nn

from ..errors import CoMoViError
from .config import CoMoViConfig

FRAMES_PER_LATENT = 4  # Wan2.2 VAE temporal compression


def _layer_norm(x: torch.Tensor) -> torch.Tensor:
    return F.layer_norm(x, x.shape[-1:], eps=1e-6)  # no affine, as the release


class SMPLDecoderLayer(nn.Module):
    """Pre-norm: self-attention over pose queries, frame-local cross-attention, feed-forward."""

    def __init__(self, dim: int, heads: int, ffn_dim: int):
        super().__init__()
        self.self_attn = WanAttention(dim, heads=heads, dim_head=dim // heads, eps=1e-6, processor=WanAttnProcessor())
        self.cross_attn = WanAttention(
            dim,
            heads=heads,
            dim_head=dim // heads,
            eps=1e-6,
            cross_attention_dim_head=dim // heads,
            processor=WanAttnProcessor(),
        )
        self.ffn = FeedForward(dim, inner_dim=ffn_dim, activation_fn="gelu-approximate", bias=True)

    def forward(self, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """x (B, P, D) pose queries; memory (B*(f-1), H'W', D) normalised features of latent frames 1.."""
        b, p, d = x.shape
        x = x + self.self_attn(_layer_norm(x))
        q = _layer_norm(x).reshape(b * p // FRAMES_PER_LATENT, FRAMES_PER_LATENT, d)  # (B*(f-1), 4, D)
        x = x + self.cross_attn(q, encoder_hidden_states=memory).reshape(b, p, d)
        return x + self.ffn(_layer_norm(x))


class SMPLHead(nn.Module):
    """Predicts (B, P, 24*6) poses for the P = F-1 frames after the start frame."""

    def __init__(self, config: CoMoViConfig):
        super().__init__()
        dim, pose_dim = config.hidden_size, config.num_joints * 6
        self.pose_dim = pose_dim
        self.proj_in = nn.Linear(pose_dim, dim)
        self.frame_embedding = nn.Parameter(torch.zeros(1, config.smpl_max_frames, dim))  # (1, 80, D)
        self.layers = nn.ModuleList(
            SMPLDecoderLayer(dim, config.smpl_heads, config.smpl_ffn_dim) for _ in range(config.smpl_layers)
        )
        self.proj_out = nn.Linear(dim, pose_dim)
        # one fusion layer per motion block: fused = x_motion + fusion(x_rgb)
        self.fusion = nn.ModuleList(nn.Linear(dim, dim) for _ in range(config.num_motion_blocks))

    def initialize_weights(self) -> None:
        """Zero every projection (the head starts by returning the start pose), as the release does."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.zeros_(module.weight)
                nn.init.zeros_(module.bias)

    def queries_embedding(self, num_queries: int) -> torch.Tensor:
        """(1, P, D) learned frame embedding; resampled linearly in time when P differs from the table."""
        table = self.frame_embedding
        if num_queries == table.shape[1]:
            return table
        return F.interpolate(table.transpose(1, 2), size=num_queries, mode="linear", align_corners=True).transpose(1, 2)

    def forward(self, start_pose: torch.Tensor, fused: torch.Tensor, latent_frames: int) -> torch.Tensor:
        """start_pose (B, 144) or (B, P, 144) 6D; fused (B, L, D) with L = latent_frames * H'W'. -> (B, P, 144)."""
        b, length, d = fused.shape
        num_queries = FRAMES_PER_LATENT * (latent_frames - 1)
        if num_queries < FRAMES_PER_LATENT:
            raise CoMoViError("the 3D head needs at least 5 frames (two latent frames)")
        if start_pose.ndim == 2:
            start_pose = start_pose[:, None].expand(b, num_queries, self.pose_dim)
        if start_pose.shape != (b, num_queries, self.pose_dim):
            raise CoMoViError(
                f"start pose must be (B, {self.pose_dim}) or (B, {num_queries}, {self.pose_dim}), got "
                f"{tuple(start_pose.shape)}"
            )
        start_pose = start_pose.to(fused.dtype)
        memory = _layer_norm(fused).reshape(b, latent_frames, length // latent_frames, d)[:, 1:]
        memory = memory.reshape(b * (latent_frames - 1), length // latent_frames, d)  # (B*(f-1), H'W', D)
        x = self.proj_in(start_pose) + self.queries_embedding(num_queries).to(fused.dtype)
        for layer in self.layers:
            x = layer(x, memory)
        return start_pose + self.proj_out(x)
