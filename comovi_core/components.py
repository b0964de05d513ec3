"""Load the pipeline's components from disk: CoMoVi transformer, Wan2.2 VAE, umT5 text encoder."""

from __future__ import annotations

from pathlib import Path

import torch

from .model.config import get_config
from .model.loading import load_model
from .model.memory import compile_blocks, enable_block_swap, enable_fp8_storage, set_attention_backend
from .text import UMT5TextEncoder
from .vae_loading import load_wan22_vae

AUTO_SIZE = "auto"  # read the model size from the weights (``model.loading.resolve_config``)


def load_components(
    base: Path,
    comovi_files: list[Path],
    model_config: str | None = None,
    dtype=torch.bfloat16,
    device="cuda",
    fp8: bool = False,
    block_swap: int = 0,
    offload: bool = False,
    attention: str = "sdpa",
    vae_path: Path | None = None,
    lora: Path | None = None,
    lora_scale: float = 1.0,
    compile: bool = False,
) -> tuple[dict, str]:
    """``base``: the Wan2.2-TI2V-5B diffusers folder; ``comovi_files`` loaded on top. -> (components, load summary).

    ``model_config``: a preset name the weights must match, or None to read the size from the weights.

    ``vae_path``: another Wan2.2 VAE (a diffusers folder or the original single file); default ``base/vae``.
    ``lora``: a LoRA file merged into the transformer at ``lora_scale`` (before fp8 storage / block swap).
    """
    transformer, summary = load_transformer(
        [Path(base) / "transformer", *comovi_files],
        model_config,
        dtype,
        device,
        fp8,
        block_swap,
        offload,
        attention,
        lora,
        lora_scale,
        compile,
    )
    vae = load_wan22_vae(vae_path or Path(base) / "vae", torch.float32)
    if not offload:
        vae.to(device)
    vae.enable_tiling()  # 81 frames at 704x1280 decode within 24 GB
    text = UMT5TextEncoder(base, "cpu" if offload else device, dtype, transformer.comovi_config.text_len)
    return dict(transformer=transformer, vae=vae, text_encoder=text), summary


def load_transformer(
    paths: list[Path],
    model_config: str | None = None,
    dtype=torch.bfloat16,
    device="cuda",
    fp8: bool = False,
    block_swap: int = 0,
    offload: bool = False,
    attention: str = "sdpa",
    lora: Path | None = None,
    lora_scale: float = 1.0,
    compile: bool = False,
):
    """The CoMoVi transformer from stacked files/folders (any layout; later files win) with its memory mode.

    -> (transformer, load summary). Without ``offload`` or ``block_swap`` it ends on ``device``.
    ``attention``: a ``memory.ATTENTION_BACKENDS`` name; ``compile``: ``torch.compile`` the blocks (``compile_blocks``).
    """
    config = None if model_config in (None, AUTO_SIZE) else get_config(model_config)
    transformer, report = load_model(config, paths, dtype=dtype, device="cpu", lora=lora, lora_scale=lora_scale)
    set_attention_backend(transformer, attention, device)
    if fp8:
        enable_fp8_storage(transformer, compute_dtype=dtype)
    if block_swap:
        enable_block_swap(transformer, block_swap, device)
    elif not offload:
        transformer.to(device)
    summary = report.summary()
    if compile:
        summary += f"; torch.compile: {compile_blocks(transformer)} blocks (the first step compiles)"
    return transformer, summary
