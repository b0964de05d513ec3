"""Load the pipeline's components from disk: CoMoVi transformer, Wan2.2 VAE, umT5 text encoder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..codecs.loading import load_text_encoder, load_vae
from ..model.config import get_config
from ..model.loading import load_model
from ..model.memory import FP8_STORAGE, compile_blocks, enable_block_swap, set_attention_backend

AUTO_SIZE = "auto"  # read the model size from the weights (``model.loading.resolve_config``)


@dataclass(frozen=True)
class TransformerOptions:
    """How ``load_transformer`` (and ``load_components``) load the CoMoVi transformer.

    ``model_config``: a preset name the weights must match, or None / ``AUTO_SIZE`` to read the size from the weights.
    ``fp8``: fp8 weight storage; ``block_swap``: layer pairs kept in CPU memory (``enable_block_swap``);
    ``offload``: leave the weights in CPU memory (the host moves them). ``attention``: a
    ``memory.ATTENTION_BACKENDS`` name. ``lora``: a LoRA file merged at ``lora_scale`` (before fp8 storage / block
    swap). ``compile``: ``torch.compile`` the blocks (``compile_blocks``).
    """

    model_config: str | None = None
    dtype: torch.dtype = torch.bfloat16
    device: str | torch.device = "cuda"
    fp8: bool = False
    block_swap: int = 0
    offload: bool = False
    attention: str = "sdpa"
    lora: Path | None = None
    lora_scale: float = 1.0
    compile: bool = False


def load_components(
    base: Path,
    comovi_files: list[Path],
    options: TransformerOptions = TransformerOptions(),
    vae_path: Path | None = None,
) -> tuple[dict, str]:
    """``base``: the Wan2.2-TI2V-5B diffusers folder; ``comovi_files`` loaded on top. -> (components, load summary).

    ``options``: how to load the transformer (``TransformerOptions``); its ``dtype``, ``device`` and ``offload``
    apply to the text encoder and the VAE too.
    ``vae_path``: another Wan2.2 VAE (a diffusers folder or the original single file); default ``base/vae``.
    """
    transformer, summary = load_transformer([Path(base) / "transformer", *comovi_files], options)
    device = "cpu" if options.offload else options.device
    vae = load_vae(vae_path or Path(base) / "vae", device=None if options.offload else options.device)
    vae.enable_tiling()  # 81 frames at 704x1280 decode within 24 GB
    text = load_text_encoder(base, device=device, dtype=options.dtype, text_len=transformer.comovi_config.text_len)
    return dict(transformer=transformer, vae=vae, text_encoder=text), summary


def load_transformer(paths: list[Path], options: TransformerOptions = TransformerOptions()):
    """The CoMoVi transformer from stacked files/folders (any layout; later files win) with its memory mode.

    -> (transformer, load summary). Without ``options.offload`` or ``options.block_swap`` it ends on
    ``options.device``.
    """
    config = None if options.model_config in (None, AUTO_SIZE) else get_config(options.model_config)
    resident = not (options.offload or options.block_swap)  # every weight ends on options.device: stream it there
    transformer, report = load_model(
        config,
        paths,
        dtype=options.dtype,
        device=options.device if resident else "cpu",
        lora=options.lora,
        lora_scale=options.lora_scale,
        storage_dtype=FP8_STORAGE if options.fp8 else None,
    )
    set_attention_backend(transformer, options.attention, options.device)
    if options.block_swap:
        enable_block_swap(transformer, options.block_swap, options.device)
    elif not options.offload:
        transformer.to(options.device)
    summary = report.summary()
    if options.compile:
        summary += f"; torch.compile: {compile_blocks(transformer)} blocks (the first step compiles)"
    return transformer, summary
