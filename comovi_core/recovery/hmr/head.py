"""The SMPL head of HMR 2.0: one zero token cross-attends to the image tokens and reads out pose, shape, camera.

Each layer is pre-norm self-attention, cross-attention and feed-forward (diffusers ``Attention`` and
``FeedForward``, no bias on q/k/v, exact GELU). The readouts add to the training set's mean parameters
(buffers ``init_body_pose`` (1, 144) in 6D, ``init_betas`` (1, 10), ``init_cam`` (1, 3)).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ...body.rotations import rot6d_to_matrix
from .config import HMR2Config


@dataclass
class HMR2Output:
    global_orient: torch.Tensor  # (B, 3, 3) rotation matrix, camera frame (x right, y down, z forward)
    body_pose: torch.Tensor  # (B, 23, 3, 3) rotation matrices, SMPL joint order
    betas: torch.Tensor  # (B, 10) SMPL shape
    cam: torch.Tensor  # (B, 3) weak-perspective crop camera (scale s, tx, ty): crop pixel u = (s x + tx + 1) S / 2


def hmr2_rot6d_to_matrix(rot6d: torch.Tensor) -> torch.Tensor:
    """(..., 6) -> (..., 3, 3) in HMR's convention: the two 3-vectors are the first two COLUMNS (Gram-Schmidt)."""
    return rot6d_to_matrix(rot6d).transpose(-1, -2)


class DecoderLayer(nn.Module):
    def __init__(self, config: HMR2Config):
        super().__init__()
        from diffusers.models.attention import FeedForward
        from diffusers.models.attention_processor import Attention

        dim, heads, dim_head = config.head_dim, config.head_heads, config.head_dim_head
        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = Attention(dim, heads=heads, dim_head=dim_head, bias=False, out_bias=True)
        self.norm2 = nn.LayerNorm(dim)
        self.attn2 = Attention(dim, config.embed_dim, heads=heads, dim_head=dim_head, bias=False, out_bias=True)
        self.norm3 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim, inner_dim=config.head_mlp_dim, activation_fn="gelu")

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = x + self.attn1(self.norm1(x))  # (B, 1, D)
        x = x + self.attn2(self.norm2(x), encoder_hidden_states=context)
        return x + self.ff(self.norm3(x))


class HMRDecoderHead(nn.Module):
    """(B, N, embed_dim) image tokens -> HMR2Output. ``token_dim``: width of the query token (HMR 2.0: a single
    zero; CameraHMR: its CLIFF token of box information and mean parameters)."""

    def __init__(self, config: HMR2Config, token_dim: int = 1):
        super().__init__()
        self.config = config
        self.token_embedding = nn.Linear(token_dim, config.head_dim)
        self.pos_embedding = nn.Parameter(torch.zeros(1, 1, config.head_dim))
        self.layers = nn.ModuleList(DecoderLayer(config) for _ in range(config.head_depth))
        self.decpose = nn.Linear(config.head_dim, config.npose)
        self.decshape = nn.Linear(config.head_dim, 10)
        self.deccam = nn.Linear(config.head_dim, 3)
        identity6d = torch.eye(3)[:, :2].T.reshape(6)  # first two columns, HMR's layout
        self.register_buffer("init_body_pose", identity6d.repeat(config.num_body_joints + 1)[None])
        self.register_buffer("init_betas", torch.zeros(1, 10))
        self.register_buffer("init_cam", torch.tensor([[0.9, 0.0, 0.0]]))

    def forward(self, context: torch.Tensor, token: torch.Tensor | None = None) -> HMR2Output:
        b = context.shape[0]
        token = context.new_zeros(b, 1, 1) if token is None else token  # (B, 1, token_dim)
        x = self.token_embedding(token) + self.pos_embedding  # (B, 1, D)
        for layer in self.layers:
            x = layer(x, context)
        x = x[:, 0]  # (B, D)
        pose = hmr2_rot6d_to_matrix((self.decpose(x) + self.init_body_pose).unflatten(-1, (-1, 6)))  # (B, 24, 3, 3)
        betas = self.decshape(x) + self.init_betas
        cam = self.deccam(x) + self.init_cam
        return HMR2Output(pose[:, 0], pose[:, 1:], betas, cam)
