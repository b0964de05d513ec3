"""Context (sequence) parallelism for inference: the tokens of both branches split over N processes.

``enable_context_parallel(model, n)`` uses diffusers' context-parallel hooks with the model's ``_cp_plan`` (see
``CoMoViTransformer``): every process holds the whole model and 1/N of the tokens of each branch; the self-attention
of every block exchanges them (``ulysses``: all-to-all over heads, heads divisible by N; ``ring``: keys and values
passed around), cross-attention to the text runs locally, and the outputs (and the 3D head's features) are gathered
so each process returns the full prediction. Launch one process per GPU (``torchrun --nproc_per_node N``); without
GPUs the processes talk over gloo (how the tests run it). The 3D head attends over all tokens after the gather and
runs unsplit on every process.
"""

from __future__ import annotations

import os

import torch

from ..errors import CoMoViError

CONTEXT_PARALLEL_MODES = ("ulysses", "ring")


def init_process_group() -> tuple[int, int]:
    """(rank, world size) of this process under torchrun / accelerate launch: accelerate's ``PartialState`` sets up
    the default group (NCCL on GPUs, one per process; gloo without)."""
    if "WORLD_SIZE" not in os.environ:
        raise CoMoViError(
            "context parallelism runs one process per GPU: launch with torchrun --nproc_per_node N -m ... "
            "(or accelerate launch)"
        )
    from accelerate import PartialState

    state = PartialState(cpu=not torch.cuda.is_available())
    return state.process_index, state.num_processes


def check_split(model, latent_shape: tuple, processes: int, mode: str = "ulysses") -> None:
    """Refuse a latent size whose tokens (or a head count) do not split evenly over ``processes``."""
    cfg = model.comovi_config
    _, _, f, h, w = latent_shape
    tokens = (f // cfg.patch_size[0]) * (h // cfg.patch_size[1]) * (w // cfg.patch_size[2])
    if tokens % processes:
        raise CoMoViError(
            f"{tokens} tokens per branch do not split over {processes} processes: choose a frame count or size "
            f"whose latent tokens (latent frames x H/32 x W/32) are a multiple of {processes}"
        )
    if mode == "ulysses" and cfg.num_attention_heads % processes:
        raise CoMoViError(
            f"ulysses splits the {cfg.num_attention_heads} attention heads over {processes} processes: use a "
            "process count that divides them, or mode ring"
        )


def enable_context_parallel(model, processes: int, mode: str = "ulysses"):
    """Turn on context parallelism over ``processes`` (the whole default group); returns ``model``."""
    from diffusers import ContextParallelConfig

    if mode == "ring" and not torch.cuda.is_available():
        raise CoMoViError(
            "ring attention needs a GPU attention backend that returns log-sum-exp (flash, cuDNN): use mode ulysses"
        )
    if mode not in CONTEXT_PARALLEL_MODES:
        raise CoMoViError(f"unknown context-parallel mode {mode!r}; choose one of {list(CONTEXT_PARALLEL_MODES)}")
    degree = {"ulysses_degree": processes} if mode == "ulysses" else {"ring_degree": processes}
    if torch.cuda.is_available():
        model.enable_parallelism(config=ContextParallelConfig(**degree))
    else:
        _enable_on_cpu(model, ContextParallelConfig(**degree))
    if model.smpl_head is not None:  # the head's queries are not split: its attention stays local
        for module in model.smpl_head.modules():
            if hasattr(getattr(module, "processor", None), "_parallel_config"):
                module.processor._parallel_config = None
    model.context_parallel = (processes, mode)
    return model


def _enable_on_cpu(model, cp_config) -> None:
    """``enable_parallelism`` for CPU processes (gloo): diffusers picks the device as rank % accelerator count, which
    is a division by zero without GPUs; the same steps with a CPU mesh."""
    import torch.distributed as dist
    from diffusers.hooks.context_parallel import apply_context_parallel
    from diffusers.models._modeling_parallel import ParallelConfig
    from torch.distributed.device_mesh import init_device_mesh

    config = ParallelConfig(context_parallel_config=cp_config)
    mesh = init_device_mesh("cpu", mesh_shape=cp_config.mesh_shape, mesh_dim_names=cp_config.mesh_dim_names)
    config.setup(dist.get_rank(), dist.get_world_size(), torch.device("cpu"), mesh=mesh)
    model._parallel_config = config
    for module in model.modules():
        if hasattr(getattr(module, "processor", None), "_parallel_config"):
            module.processor._parallel_config = config
    apply_context_parallel(model, cp_config, model._cp_plan)
