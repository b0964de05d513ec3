"""Memory modes for 24 GB cards: fp8 weight storage, block swap, (gradient checkpointing in dual.py).

- ``enable_fp8_storage``: the blocks of both branches keep their weights in float8 (e4m3) and are
  upcast layer by layer to the compute dtype (diffusers' layerwise casting hooks); embeddings, norms,
  the zero-linears and the 3D head stay in the compute dtype. Halves the ~20 GB of bf16 weights.
- ``enable_block_swap``: the last N (motion block, RGB blocks) pairs live on the offload device and are
  moved to the compute device together right before their layer and back right after, so one layer's
  two branches are never split across devices.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING

import torch

from ..errors import CoMoViError

if TYPE_CHECKING:  # the model imports diffusers (seconds); the ComfyUI adapters import this module at start-up
    from .dual import CoMoViTransformer

log = logging.getLogger(__name__)


def enable_fp8_storage(model: CoMoViTransformer, compute_dtype: torch.dtype = torch.bfloat16,
                       storage_dtype: torch.dtype = torch.float8_e4m3fn) -> None:
    """Store both branches' weights in ``storage_dtype``; compute in ``compute_dtype``."""
    for branch in (model.rgb, model.motion):
        branch.enable_layerwise_casting(storage_dtype=storage_dtype, compute_dtype=compute_dtype)


class BlockSwap:
    """Keeps ``num_pairs`` layer pairs on ``offload_device`` and swaps each in for its own layer."""

    def __init__(self, model: CoMoViTransformer, num_pairs: int, device, offload_device="cpu"):
        total = model.comovi_config.num_motion_blocks
        if not 0 <= num_pairs <= total:
            raise CoMoViError(f"block swap: num_pairs must be between 0 and {total} (layer pairs in the model), got {num_pairs}")
        self.model, self.device, self.offload_device = model, torch.device(device), torch.device(offload_device)
        self.swapped = set(range(total - num_pairs, total))
        self.moves = 0  # pairs moved in so far (for logs and tests)
        for j in range(total):
            for module in model.pair_modules(j):
                module.to(self.offload_device if j in self.swapped else self.device)
        if self.offload_device.type == "cpu" and self.device.type == "cuda":
            for j in self.swapped:  # pinned host memory makes the copies asynchronous
                for module in model.pair_modules(j):
                    for p in module.parameters():
                        p.data = p.data.pin_memory()

    @contextlib.contextmanager
    def pair(self, j: int):
        if j not in self.swapped:
            yield
            return
        modules = self.model.pair_modules(j)
        for module in modules:
            module.to(self.device, non_blocking=True)
        self.moves += 1
        try:
            yield
        finally:
            for module in modules:
                module.to(self.offload_device, non_blocking=True)


def enable_block_swap(model: CoMoViTransformer, num_pairs: int, device, offload_device="cpu") -> BlockSwap:
    """Move everything but the swapped pairs to ``device``; returns the swapper (``model.block_swap``)."""
    swapper = BlockSwap(model, num_pairs, device, offload_device)
    kept = [m for j in range(model.comovi_config.num_motion_blocks) for m in model.pair_modules(j)]
    kept_ids = {id(p) for m in kept for p in m.parameters()}
    for p in model.parameters():
        if id(p) not in kept_ids:
            p.data = p.data.to(device)
    for b in model.buffers():
        b.data = b.data.to(device)
    model.block_swap = swapper
    log.info("block swap: %d of %d layer pairs live on %s", num_pairs, model.comovi_config.num_motion_blocks,
             offload_device)
    return swapper


def _swapped_modules(model) -> list[torch.nn.Module]:
    """The modules of the layer pairs block swap keeps off the compute device (none without block swap)."""
    swap = getattr(model, "block_swap", None)
    return [] if swap is None else [m for j in swap.swapped for m in model.pair_modules(j)]


def resident_bytes(model: torch.nn.Module) -> int:
    """Bytes of weights and buffers that live on the compute device when ``model`` is placed there
    (block-swapped layer pairs excluded; fp8-stored weights count one byte per element)."""
    swapped = {id(p) for m in _swapped_modules(model) for p in m.parameters()}
    tensors = [p for p in model.parameters() if id(p) not in swapped] + list(model.buffers())
    return sum(t.numel() * t.element_size() for t in tensors)


def place(model: torch.nn.Module, device) -> None:
    """Move ``model``'s resident weights to ``device``; block-swapped pairs stay where block swap keeps them."""
    skipped = {id(m) for m in _swapped_modules(model)}

    def visit(module: torch.nn.Module) -> None:
        if id(module) in skipped:
            return
        module._apply(lambda t: t.to(device), recurse=False)  # this module's own tensors, as Module.to does
        for child in module.children():
            visit(child)

    visit(model)


# ours -> (diffusers' dispatcher name, what it needs); "sdpa" is PyTorch's own choice of kernel and always works
ATTENTION_BACKENDS = {
    "sdpa": ("native", None),
    "sdpa_math": ("_native_math", None),  # PyTorch's reference kernel (slow; any device)
    "sdpa_flash": ("_native_flash", "a CUDA GPU"),
    "sdpa_efficient": ("_native_efficient", "a CUDA GPU"),
    "sdpa_cudnn": ("_native_cudnn", "a CUDA GPU"),
    "flash": ("flash", "flash-attn (pip install flash-attn) and a CUDA GPU"),
    "flash3": ("_flash_3", "FlashAttention 3 (built from source, Hopper GPUs)"),
    "sage": ("sage", "sageattention (pip install sageattention) and a CUDA GPU"),
    "xformers": ("xformers", "xformers (pip install xformers) and a CUDA GPU"),
}


def set_attention_backend(model: CoMoViTransformer, backend: str = "sdpa", device=None) -> None:
    """Route every attention of both branches and the 3D head through ``backend`` (diffusers' dispatcher,
    ``ModelMixin.set_attention_backend``). ``device``: where the model will run (backends other than ``sdpa`` and
    ``sdpa_math`` need CUDA). A backend whose package is missing is refused here, not at the first step."""
    from diffusers.models.attention_dispatch import _AttentionBackendRegistry

    if backend not in ATTENTION_BACKENDS:
        raise CoMoViError(f"unknown attention backend {backend!r}; choose one of {list(ATTENTION_BACKENDS)}")
    name, needs = ATTENTION_BACKENDS[backend]
    if needs is not None and device is not None and torch.device(device).type != "cuda":
        raise CoMoViError(f"attention backend {backend!r} needs {needs}; the model runs on {device}: "
                          "use the default 'sdpa' there")
    # diffusers also makes the backend the process-wide default; put the default back so that other models
    # (the VAE, a second transformer) keep theirs: this model's attention modules carry their own setting
    previous = _AttentionBackendRegistry.get_active_backend()[0]
    try:
        model.set_attention_backend(name)
    except (ImportError, RuntimeError, ValueError) as exc:
        raise CoMoViError(f"attention backend {backend!r} is not usable here: it needs {needs} ({exc}); "
                          "use the default 'sdpa'") from exc
    finally:
        _AttentionBackendRegistry.set_active_backend(previous)


def attention_backend(model: torch.nn.Module) -> str | None:
    """Our name of the backend every attention module of ``model`` uses (None: mixed or diffusers' default)."""
    names = {getattr(m.processor, "_attention_backend", None) for m in model.modules()
             if hasattr(getattr(m, "processor", None), "_attention_backend")}
    if len(names) != 1 or None in names:
        return None
    value = names.pop().value
    return next((ours for ours, (theirs, _) in ATTENTION_BACKENDS.items() if theirs == value), value)


def compile_blocks(model: CoMoViTransformer, **compile_kwargs) -> int:
    """``torch.compile`` every transformer block of both branches and every 3D-head layer in place (diffusers'
    regional compilation, ``ModelMixin.compile_repeated_blocks``); returns how many modules were compiled.
    The first step pays the compilation (seconds to minutes); later steps run the compiled kernels."""
    if not hasattr(torch, "compile"):
        raise CoMoViError(f"--compile needs torch.compile (PyTorch >= 2.0); this is torch {torch.__version__}")
    model.compile_repeated_blocks(**compile_kwargs)
    return sum(1 for m in model.modules() if type(m).__name__ in model._repeated_blocks)
