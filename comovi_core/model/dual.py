"""The dual-branch CoMoVi transformer (docs/model.md), built from diffusers' Wan modules.

``rgb`` and ``motion`` are diffusers ``WanTransformer3DModel`` bodies (patch embedding, blocks, output
norm and projection); the text/time embedder and RoPE of ``rgb`` are shared by both branches (the
motion copy has none). What is CoMoVi's own lives here: the per-layer coupling through zero-initialised
linears, and the 3D head (``smpl_head.py``).

Coupling, inside layer j (a motion block j paired with RGB block j*interleave):
    single_m2v  (release default)  x_rgb += ZL[j](x_motion) after both blocks
    single_v2m                      x_motion += ZL[j](x_rgb) before the motion block
    dual                            x_motion += ZL_v2m[j](x_rgb) before, x_rgb += ZL_m2v[j](x_motion) after
                                    (separate linears per direction, so it is well formed for a full copy)
    paper      (Eq. 6)              fused_j = x_motion + ZL[j](x_rgb) feeds only the 3D head;
                                    x_rgb += ZL[j+1](x_motion); the motion stream is never modified
    none                            independent branches
Order inside a layer, as the release: (v->m) -> motion block -> rgb block -> 3D head -> (m->v).

The model is a diffusers ``ModelMixin`` + ``ConfigMixin``: its constructor arguments are the fields of
``CoMoViConfig`` (registered as the diffusers config, so ``save_pretrained``/``from_pretrained`` write and read
``config.json`` + safetensors with our key layout), and ``model.comovi_config`` is that dataclass with its
derived sizes. Gradient checkpointing, attention backends, group offload and regional compilation are diffusers'.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from diffusers import WanTransformer3DModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models._modeling_parallel import ContextParallelInput, ContextParallelOutput
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from ..errors import CoMoViError
from .config import CoMoViConfig
from .smpl_head import SMPLHead
from .step_cache import StepCache


class CoMoViOutput(NamedTuple):
    """A tuple, so that hooks that follow a module's output tensors see them (DeepSpeed ZeRO-3 gathers parameters
    for the backward pass from them)."""

    rgb: torch.Tensor  # (B, C, F, H, W) predicted flow of the RGB branch
    motion: torch.Tensor  # (B, C, F, H, W) predicted flow of the motion branch
    smpl_6d: torch.Tensor | None  # (B, P, 144) poses of frames 1..F-1 (6D), None without a head


def _zero_linear(dim: int) -> nn.Linear:
    layer = nn.Linear(dim, dim)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


_D = CoMoViConfig()  # the constructor's defaults are the dataclass's (the released 5B model)


class _Tokens(nn.Module):
    """Returns its inputs: a named place in the forward pass where context parallelism splits or gathers tokens."""

    def forward(self, *tokens):
        return tokens if len(tokens) > 1 else tokens[0]


class CoMoViTransformer(ModelMixin, ConfigMixin):
    """Both branches, the coupling and the 3D head. Build it from a config with ``from_comovi_config``."""

    _supports_gradient_checkpointing = True
    _no_split_modules = ["WanTransformerBlock", "SMPLDecoderLayer"]
    _repeated_blocks = ["WanTransformerBlock", "SMPLDecoderLayer"]  # what ``compile_repeated_blocks`` compiles
    # context parallelism (``model.parallel``, diffusers' hooks): each process keeps 1/N of the tokens of both branches
    # (the same positions in each, so the per-token coupling stays local); self-attention exchanges them (Ulysses or
    # ring); the outputs and the 3D head's features are gathered. Per-token timesteps and RoPE are split alike.
    _cp_plan = {
        "timesteps_in": {0: ContextParallelInput(split_dim=1, expected_dims=2, split_output=True)},  # (B, L) only
        "rgb.rope": {
            0: ContextParallelInput(split_dim=1, expected_dims=4, split_output=True),
            1: ContextParallelInput(split_dim=1, expected_dims=4, split_output=True),
        },
        "tokens_in": {  # its outputs: the tokens of both branches
            0: ContextParallelInput(split_dim=1, expected_dims=3, split_output=True),
            1: ContextParallelInput(split_dim=1, expected_dims=3, split_output=True),
        },
        "rgb.proj_out": ContextParallelOutput(gather_dim=1, expected_dims=3),
        "motion.proj_out": ContextParallelOutput(gather_dim=1, expected_dims=3),
        "fused_out": ContextParallelOutput(gather_dim=1, expected_dims=3),
    }

    @register_to_config
    def __init__(
        self,
        patch_size: tuple[int, int, int] = _D.patch_size,
        num_attention_heads: int = _D.num_attention_heads,
        attention_head_dim: int = _D.attention_head_dim,
        in_channels: int = _D.in_channels,
        out_channels: int = _D.out_channels,
        text_dim: int = _D.text_dim,
        text_len: int = _D.text_len,
        freq_dim: int = _D.freq_dim,
        ffn_dim: int = _D.ffn_dim,
        num_layers: int = _D.num_layers,
        eps: float = _D.eps,
        rope_max_seq_len: int = _D.rope_max_seq_len,
        interaction: str = _D.interaction,
        interleave: int = _D.interleave,
        smpl_layers: int = _D.smpl_layers,
        smpl_heads: int = _D.smpl_heads,
        smpl_ffn_dim: int = _D.smpl_ffn_dim,
        smpl_max_frames: int = _D.smpl_max_frames,
        num_joints: int = _D.num_joints,
    ):
        super().__init__()
        # the registered arguments (diffusers' ``self.config``) as our dataclass, checked by its __post_init__
        config = CoMoViConfig.from_dict({k: v for k, v in self.config.items() if not k.startswith("_")})
        self.comovi_config = config
        dim = config.hidden_size
        self.rgb = WanTransformer3DModel(**config.wan_kwargs())
        self.motion = WanTransformer3DModel(**config.wan_kwargs(config.num_motion_blocks))
        del self.motion.condition_embedder, self.motion.rope  # shared with the RGB branch
        n_zero = {"none": 0, "dual": 2 * config.num_motion_blocks, "paper": config.num_motion_blocks + 1}
        self.zero_linears = nn.ModuleList(
            _zero_linear(dim) for _ in range(n_zero.get(config.interaction, config.num_motion_blocks))
        )
        self.smpl_head = SMPLHead(config) if config.has_smpl_head else None
        self.tokens_in, self.timesteps_in, self.fused_out = _Tokens(), _Tokens(), _Tokens()  # context-parallel points
        self.gradient_checkpointing = False  # set by diffusers' enable_gradient_checkpointing()
        self.block_swap = None  # set by memory.enable_block_swap (diffusers group offload of layer pairs)
        self.layer_callback = None  # called with the layer index after each layer pair; may raise to cancel

    @classmethod
    def from_comovi_config(cls, config: CoMoViConfig) -> CoMoViTransformer:
        return cls(**config.to_dict())

    def initialize_weights(self) -> None:
        """Zero the coupling and the 3D head so the RGB branch starts as plain Wan2.2."""
        for layer in self.zero_linears:
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        if self.smpl_head is not None:
            self.smpl_head.initialize_weights()

    # ---- coupling helpers -------------------------------------------------------------------
    def _v2m(self, j: int) -> nn.Linear | None:
        mode = self.comovi_config.interaction
        if mode == "single_v2m":
            return self.zero_linears[j]
        if mode == "dual":
            return self.zero_linears[2 * j]
        return None

    def _m2v(self, j: int) -> nn.Linear | None:
        mode = self.comovi_config.interaction
        if mode == "single_m2v":
            return self.zero_linears[j]
        if mode == "dual":
            return self.zero_linears[2 * j + 1]
        if mode == "paper":
            return self.zero_linears[j + 1]
        return None

    def _fuse(self, j: int, x_rgb: torch.Tensor, x_motion: torch.Tensor) -> torch.Tensor:
        if self.comovi_config.interaction == "paper":
            return x_motion + self.zero_linears[j](x_rgb)
        return x_motion + self.smpl_head.fusion[j](x_rgb)

    def _layer(self, j, x_rgb, x_motion, context, timestep_proj, rotary_emb):
        """Motion block j and its RGB blocks, with the coupling. Returns (x_rgb, x_motion, fused or None)."""
        cfg = self.comovi_config
        v2m = self._v2m(j)
        if v2m is not None:
            x_motion = x_motion + v2m(x_rgb)
        x_motion = self.motion.blocks[j](x_motion, context, timestep_proj, rotary_emb)
        first = j * cfg.interleave
        x_rgb = self.rgb.blocks[first](x_rgb, context, timestep_proj, rotary_emb)
        fused = None
        if self.smpl_head is not None and j == cfg.num_motion_blocks - 1:
            fused = self._fuse(j, x_rgb, x_motion)
        m2v = self._m2v(j)
        if m2v is not None:
            x_rgb = x_rgb + m2v(x_motion)
        for i in range(first + 1, first + cfg.interleave):
            x_rgb = self.rgb.blocks[i](x_rgb, context, timestep_proj, rotary_emb)
        return x_rgb, x_motion, fused

    def _head(self, branch: WanTransformer3DModel, x: torch.Tensor, temb: torch.Tensor, grid: tuple) -> torch.Tensor:
        """Output norm with the (shift, scale) modulation, projection, unpatchify. x (B, L, D) -> (B, C, F, H, W)."""
        b, (f, h, w), (pt, ph, pw) = x.shape[0], grid, self.comovi_config.patch_size
        if temb.ndim == 3:  # per-token timesteps (Wan2.2 TI2V)
            shift, scale = (branch.scale_shift_table.unsqueeze(0) + temb.unsqueeze(2)).chunk(2, dim=2)
            shift, scale = shift.squeeze(2), scale.squeeze(2)
        else:
            shift, scale = (branch.scale_shift_table + temb.unsqueeze(1)).chunk(2, dim=1)
        x = (branch.norm_out(x.float()) * (1 + scale) + shift).type_as(x)
        x = branch.proj_out(x)  # (B, L, pt*ph*pw*C)
        x = x.reshape(b, f, h, w, pt, ph, pw, -1).permute(0, 7, 1, 4, 2, 5, 3, 6)
        return x.flatten(6, 7).flatten(4, 5).flatten(2, 3)

    def forward(
        self,
        rgb_latents: torch.Tensor,
        motion_latents: torch.Tensor,
        timestep: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        start_pose_6d: torch.Tensor | None = None,
        step_cache: StepCache | None = None,
    ) -> CoMoViOutput:
        """Predict the flow of both branches (and SMPL poses when the head exists and a start pose is given).

        rgb_latents, motion_latents: (B, C, F, H, W) with the same shape.
        timestep: (B,) or (B, L) per token (L = F*H*W/4; latent frame 0 at t=0 for TI2V).
        encoder_hidden_states: (B, text_len, text_dim) text embeddings, zero-padded as Wan pipelines do.
        start_pose_6d: (B, 144) or (B, 4*(F-1), 144).
        step_cache: the sampler's ``StepCache`` (set to the current step), or None: every call runs the blocks.
        """
        cfg = self.comovi_config
        if rgb_latents.shape != motion_latents.shape:
            raise CoMoViError(
                f"rgb and motion latents must have the same shape, got {tuple(rgb_latents.shape)} and "
                f"{tuple(motion_latents.shape)}"
            )
        b, _, f, h, w = rgb_latents.shape
        grid = (f // cfg.patch_size[0], h // cfg.patch_size[1], w // cfg.patch_size[2])
        # 1. patch embedding and RoPE (shared)
        rotary_emb = self.rgb.rope(rgb_latents)
        x_rgb = self.rgb.patch_embedding(rgb_latents).flatten(2).transpose(1, 2).contiguous()  # (B, L, D)
        x_motion = self.motion.patch_embedding(motion_latents).flatten(2).transpose(1, 2).contiguous()
        x_rgb, x_motion = self.tokens_in(x_rgb, x_motion)
        # 2. time and text embeddings (shared)
        timestep = self.timesteps_in(timestep)
        ts_len = timestep.shape[1] if timestep.ndim == 2 else None
        temb, timestep_proj, context, _ = self.rgb.condition_embedder(
            timestep.flatten() if ts_len else timestep, encoder_hidden_states, None, timestep_seq_len=ts_len
        )
        timestep_proj = timestep_proj.unflatten(2 if ts_len else 1, (6, -1))

        # 3. coupled blocks; a step cache may instead add each branch's last residual (comovi_core.model.step_cache)
        def blocks(x_rgb, x_motion):
            return self._blocks(x_rgb, x_motion, context, timestep_proj, rotary_emb)

        if step_cache is None:
            x_rgb, x_motion, fused = blocks(x_rgb, x_motion)
        else:
            x_rgb, x_motion, fused = step_cache.run(self, blocks, x_rgb, x_motion, timestep_proj)
        # 4. outputs
        smpl = None
        if self.smpl_head is not None and start_pose_6d is not None:
            smpl = self.smpl_head(start_pose_6d, self.fused_out(fused), grid[0])
        return CoMoViOutput(
            self._head(self.rgb, x_rgb, temb, grid), self._head(self.motion, x_motion, temb, grid), smpl
        )

    def _blocks(self, x_rgb, x_motion, context, timestep_proj, rotary_emb) -> tuple:
        """All layer pairs: (B, L, D) tokens in and out, plus the fused features of the 3D head (or None)."""
        fused = None
        for j in range(self.comovi_config.num_motion_blocks):
            if torch.is_grad_enabled() and self.gradient_checkpointing:  # diffusers' checkpointing function
                x_rgb, x_motion, out_fused = self._gradient_checkpointing_func(
                    self._layer, j, x_rgb, x_motion, context, timestep_proj, rotary_emb
                )
            else:
                x_rgb, x_motion, out_fused = self._layer(j, x_rgb, x_motion, context, timestep_proj, rotary_emb)
            fused = out_fused if out_fused is not None else fused
            if self.layer_callback is not None:
                self.layer_callback(j)
        return x_rgb, x_motion, fused

    # ---- convenience ------------------------------------------------------------------------
    def pair_modules(self, j: int) -> list[nn.Module]:
        """The modules of layer pair j, in run order: motion block j and its RGB blocks (offloaded together)."""
        i = j * self.comovi_config.interleave
        return [self.motion.blocks[j], *self.rgb.blocks[i : i + self.comovi_config.interleave]]
