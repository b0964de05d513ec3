"""Memory modes for 24 GB cards: fp8 weight storage, block swap, (gradient checkpointing in dual.py).

- ``enable_fp8_storage``: the blocks of both branches keep their weights in float8 (e4m3) and are
  upcast layer by layer to the compute dtype (diffusers' layerwise casting hooks); embeddings, norms,
  the zero-linears and the 3D head stay in the compute dtype. Halves the ~20 GB of bf16 weights.
- ``enable_block_swap``: the last N (motion block, RGB blocks) pairs live on the offload device and are
  moved to the compute device together right before their layer and back right after, so one layer's
  two branches are never split across devices; the moves are diffusers' group offload (side stream, pinned
  host copies, prefetch of the next pair on CUDA).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import torch

from ..errors import CoMoViError

if TYPE_CHECKING:  # the model imports diffusers (seconds); the ComfyUI adapters import this module at start-up
    from .dual import CoMoViTransformer

log = logging.getLogger(__name__)


FP8_STORAGE = torch.float8_e4m3fn  # how fp8 weight storage stores the branches' Linear weights


def enable_fp8_storage(
    model: CoMoViTransformer,
    compute_dtype: torch.dtype = torch.bfloat16,
    storage_dtype: torch.dtype = FP8_STORAGE,
) -> None:
    """Store both branches' weights in ``storage_dtype``; compute in ``compute_dtype``. On a model built on the meta
    device it only sets the dtypes, so that ``loading.load_model(storage_dtype=...)`` casts each tensor as it reads
    it."""
    for branch in (model.rgb, model.motion):
        branch.enable_layerwise_casting(storage_dtype=storage_dtype, compute_dtype=compute_dtype)


class PairOffload:
    """What ``enable_pair_offload`` set up: the offloaded layer pairs and their diffusers ``ModuleGroup``s."""

    def __init__(self, swapped: set[int], groups: list, device: torch.device, offload_device: torch.device):
        self.swapped, self.groups, self.device, self.offload_device = swapped, groups, device, offload_device
        self.moves = 0  # pairs moved in so far (for logs and tests)

    def _count(self, *_) -> None:
        self.moves += 1


def enable_pair_offload(
    model: CoMoViTransformer, num_pairs: int, device, offload_device="cpu", use_stream: bool | None = None
) -> PairOffload:
    """Group offload (diffusers ``hooks.group_offloading``) of the last ``num_pairs`` layer pairs: each pair (motion
    block j with its RGB blocks) is one ``ModuleGroup``, moved in when its motion block starts and dropped after its
    last RGB block, so one layer's two branches are never split across devices; everything else stays on ``device``.

    ``use_stream`` (default: on CUDA): copies run on a side stream from pinned host memory and the next swapped pair
    is prefetched while this one computes; going back is a pointer swap to the pinned copy (no device-to-host copy).
    Why not ``model.enable_group_offload`` itself: its block-level discovery onloads a branch's embeddings and
    output head on the branch's ``forward``, which the dual model never calls (it runs the branches' parts)."""
    from diffusers.hooks import HookRegistry
    from diffusers.hooks.group_offloading import (
        _GROUP_OFFLOADING,
        GroupOffloadingConfig,
        GroupOffloadingHook,
        GroupOffloadingType,
        ModuleGroup,
    )

    total = model.comovi_config.num_motion_blocks
    if not 0 <= num_pairs <= total:
        raise CoMoViError(
            f"block swap: num_pairs must be between 0 and {total} (layer pairs in the model), got {num_pairs}"
        )
    device, offload_device = torch.device(device), torch.device(offload_device)
    use_stream = device.type == "cuda" if use_stream is None else use_stream
    if use_stream and device.type != "cuda":
        raise CoMoViError(f"block swap with streams needs a CUDA device, not {device}")
    swapped = set(range(total - num_pairs, total))
    in_pairs = {id(p) for j in swapped for m in model.pair_modules(j) for p in m.parameters()}
    for p in model.parameters():  # the rest lives on the compute device
        if id(p) not in in_pairs:
            p.data = p.data.to(device)
    for b in model.buffers():
        b.data = b.data.to(device)
    stream = torch.cuda.Stream() if use_stream else None
    config = GroupOffloadingConfig(
        onload_device=device,
        offload_device=offload_device,
        offload_type=GroupOffloadingType.BLOCK_LEVEL,
        non_blocking=use_stream,
        record_stream=False,
        low_cpu_mem_usage=False,
        num_blocks_per_group=1,
        stream=stream,
    )
    groups, hooks = [], []
    for j in sorted(swapped):
        modules = model.pair_modules(j)  # run order: motion block j, then its RGB blocks
        for m in modules:
            m.to(offload_device)
        group = ModuleGroup(
            modules,
            offload_device,
            device,
            offload_leader=modules[-1],
            onload_leader=modules[0],
            non_blocking=use_stream,
            stream=stream,
            onload_self=True,
            group_id=f"layer_pair_{j}",
        )
        for m in modules:
            hook = GroupOffloadingHook(group, config=config)
            HookRegistry.check_if_exists_or_initialize(m).register_hook(hook, _GROUP_OFFLOADING)
            if m is modules[0]:
                hooks.append(hook)
        groups.append(group)
    if stream is not None:  # prefetch: pair j's start moves pair j+1 in on the side stream
        for hook, following in zip(hooks, groups[1:]):
            hook.next_group = following
            following.onload_self = False
    offload = PairOffload(swapped, groups, device, offload_device)
    for group in groups:
        group.onload_leader.register_forward_pre_hook(offload._count)
    model.block_swap = offload
    log.info(
        "block swap (diffusers group offload%s): %d of %d layer pairs live on %s",
        ", streams" if use_stream else "",
        num_pairs,
        total,
        offload_device,
    )
    return offload


def enable_block_swap(model: CoMoViTransformer, num_pairs: int, device, offload_device="cpu") -> PairOffload:
    """``--block-swap N``: the last N layer pairs offloaded with diffusers' group offload (``enable_pair_offload``).
    It replaced our own swapper after ``benchmarks/bench_block_swap.py`` (see the README's memory section)."""
    return enable_pair_offload(model, num_pairs, device, offload_device)


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
        raise CoMoViError(
            f"attention backend {backend!r} needs {needs}; the model runs on {device}: use the default 'sdpa' there"
        )
    # diffusers also makes the backend the process-wide default; put the default back so that other models
    # (the VAE, a second transformer) keep theirs: this model's attention modules carry their own setting
    previous = _AttentionBackendRegistry.get_active_backend()[0]
    try:
        model.set_attention_backend(name)
    except (ImportError, RuntimeError, ValueError) as exc:
        raise CoMoViError(
            f"attention backend {backend!r} is not usable here: it needs {needs} ({exc}); use the default 'sdpa'"
        ) from exc
    finally:
        _AttentionBackendRegistry.set_active_backend(previous)


def attention_backend(model: torch.nn.Module) -> str | None:
    """Our name of the backend every attention module of ``model`` uses (None: mixed or diffusers' default)."""
    names = {
        getattr(m.processor, "_attention_backend", None)
        for m in model.modules()
        if hasattr(getattr(m, "processor", None), "_attention_backend")
    }
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
