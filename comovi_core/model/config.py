"""Configuration of the dual-branch transformer, with named presets (``PRESETS``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..errors import CoMoViError

INTERACTIONS = ("single_m2v", "paper", "dual", "single_v2m", "none")


@dataclass(frozen=True)
class CoMoViConfig:
    # --- each branch is a Wan2.2 DiT (diffusers WanTransformer3DModel arguments) ---
    patch_size: tuple[int, int, int] = (1, 2, 2)  # (t, h, w) patch of the latent video
    num_attention_heads: int = 24  # attention heads per block
    attention_head_dim: int = 128  # channels per head; hidden size = heads * head_dim
    in_channels: int = 48  # latent channels in (Wan2.2 VAE z_dim)
    out_channels: int = 48  # predicted flow channels
    text_dim: int = 4096  # umT5-XXL embedding size
    text_len: int = 512  # prompts are zero-padded to this many tokens (by the pipeline)
    freq_dim: int = 256  # sinusoidal timestep embedding size
    ffn_dim: int = 14336  # feed-forward hidden size
    num_layers: int = 30  # blocks in the RGB branch
    eps: float = 1e-6  # norm epsilon
    rope_max_seq_len: int = 1024  # RoPE table length per axis
    # --- coupling ---
    interaction: str = "single_m2v"  # one of INTERACTIONS; release default single_m2v
    interleave: int = 1  # a motion block after every `interleave` RGB blocks (1 = full copy)
    # --- 3D-2D cross-attention head (0 layers = no head) ---
    smpl_layers: int = 6  # decoder layers of the head
    smpl_heads: int = 12  # attention heads of the head
    smpl_ffn_dim: int = 4096  # feed-forward size of the head
    smpl_max_frames: int = 80  # length of the learned pose position table (release: 80 = 81 frames - 1)
    num_joints: int = 24  # SMPL joints predicted, 6D rotation each

    def __post_init__(self) -> None:
        if self.interaction not in INTERACTIONS:
            raise CoMoViError(f"unknown interaction {self.interaction!r}; choose one of {list(INTERACTIONS)}")
        if self.interleave < 1 or self.num_layers % self.interleave:
            raise CoMoViError(f"num_layers ({self.num_layers}) must be a multiple of interleave ({self.interleave})")
        if self.smpl_layers and self.hidden_size % self.smpl_heads:
            raise CoMoViError(f"hidden size {self.hidden_size} is not divisible by smpl_heads {self.smpl_heads}")

    @property
    def hidden_size(self) -> int:
        return self.num_attention_heads * self.attention_head_dim

    @property
    def num_motion_blocks(self) -> int:
        return self.num_layers // self.interleave

    @property
    def has_smpl_head(self) -> bool:
        return self.smpl_layers > 0

    def wan_kwargs(self, num_layers: int | None = None) -> dict:
        """Arguments for diffusers' ``WanTransformer3DModel`` building one branch."""
        return dict(
            patch_size=tuple(self.patch_size),
            num_attention_heads=self.num_attention_heads,
            attention_head_dim=self.attention_head_dim,
            in_channels=self.in_channels,
            out_channels=self.out_channels,
            text_dim=self.text_dim,
            freq_dim=self.freq_dim,
            ffn_dim=self.ffn_dim,
            num_layers=self.num_layers if num_layers is None else num_layers,
            cross_attn_norm=True,
            qk_norm="rms_norm_across_heads",
            eps=self.eps,
            rope_max_seq_len=self.rope_max_seq_len,
        )

    def replace(self, **changes) -> CoMoViConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> CoMoViConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise CoMoViError(f"unknown CoMoVi config fields {unknown}")
        data = dict(data)
        if "patch_size" in data:
            data["patch_size"] = tuple(data["patch_size"])
        return cls(**data)


PRESETS: dict[str, CoMoViConfig] = {
    # the released model: Wan2.2-TI2V-5B branches
    "wan2.2-ti2v-5b": CoMoViConfig(),
    # tests: tiny and fast on CPU; same layout as the release fixtures (dim 96, 4 heads)
    "tiny": CoMoViConfig(
        num_attention_heads=4,
        attention_head_dim=24,
        text_dim=48,
        text_len=32,
        freq_dim=32,
        ffn_dim=128,
        num_layers=2,
        smpl_layers=2,
        smpl_heads=12,
        smpl_ffn_dim=96,
    ),
    # benchmarks: dim 384, 4 heads, FFN 1024, 4 layers
    "medium": CoMoViConfig(
        num_attention_heads=4,
        attention_head_dim=96,
        text_dim=256,
        text_len=64,
        freq_dim=64,
        ffn_dim=1024,
        num_layers=4,
        smpl_layers=0,
    ),
}


def get_config(name: str, **overrides) -> CoMoViConfig:
    if name not in PRESETS:
        raise CoMoViError(f"unknown model preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name].replace(**overrides) if overrides else PRESETS[name]
