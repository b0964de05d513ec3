"""Sharded data parallel training (``--sharding fsdp2``): torch's FSDP2 (``fully_shard``) over all processes.

Each transformer block (``_no_split_modules``: the Wan blocks of both branches, the 3D head's decoder layers) is one
FSDP unit and the rest of the model (embeddings, output heads, zero-linears) the root unit. Every process holds
1/N of every parameter, gradient and AdamW moment; a block's full weights exist only while it runs. The trained
parameters stay fp32 masters and the frozen ones bf16 (as under DDP); under --precision bf16 the blocks are
gathered in bf16 and gradients reduced in fp32. ``fsdp2_offload`` also keeps the shards, gradients and AdamW
state in CPU memory (the update runs on the CPU).

Only process 0 reads the weights: the others build the model on the meta device and receive their shards from
it (``load_from_rank0``), so a node holds one full copy in host memory, not one per GPU.
Checkpoints: ``step_N.safetensors`` is gathered (process 0 writes the whole model, as without sharding); the
resumable state is written by every process as its own shard files (``training.state``), which
``python -m comovi_core.consolidate`` joins into one file and any later run (any process count, sharded or not)
resumes from.
"""

from __future__ import annotations

import warnings

import torch

from ..errors import CoMoViError
from .distributed import compute_dtype, ensure_process_group


def shard_model(model, cfg, device: torch.device):
    """Wrap ``model`` in FSDP2 units in place (blocks, then the root) over all processes; returns it."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, OffloadPolicy, fully_shard

    ensure_process_group(device)
    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    options = {
        "mesh": mesh,
        "mp_policy": MixedPrecisionPolicy(param_dtype=compute_dtype(cfg), reduce_dtype=torch.float32),
        "offload_policy": CPUOffloadPolicy(pin_memory=device.type == "cuda")
        if cfg.sharding == "fsdp2_offload"
        else OffloadPolicy(),
    }
    # the root returns views (the unpatchified outputs); nothing writes into them in place (the loss slices and
    # casts), which is what this warning is about: FSDP2 and DDP give the same update (tests/test_train_sharded.py)
    warnings.filterwarnings("ignore", message="FSDP2-wrapped module .* returned a view tensor")
    units = tuple(model._no_split_modules)
    for module in list(model.modules()):
        if type(module).__name__ in units:
            fully_shard(module, **options)
    fully_shard(model, **options)
    return model


def load_from_rank0(model, full_state: dict, device: torch.device) -> None:
    """Give every process its shards of ``full_state`` (process 0's model before sharding; empty elsewhere, where
    the model was built on the meta device), and process 0's buffers (non-persistent ones such as RoPE tables are
    not in a state dict)."""
    import torch.distributed as dist
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    if any(p.is_meta for p in model.parameters()) or any(b.is_meta for b in model.buffers()):
        model.to_empty(device=device)
    options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True)
    set_model_state_dict(model, full_state, options=options)
    for buffer in model.buffers():
        dist.broadcast(buffer.data, src=0)


def full_state_dict(model) -> dict[str, torch.Tensor]:
    """The whole model's state on process 0 (CPU), gathered tensor by tensor; {} on the others. All call it."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def local_part(tensor):
    """This process's part of a (possibly sharded) tensor, as a plain tensor sharing its storage."""
    from torch.distributed.tensor import DTensor

    return tensor.to_local() if isinstance(tensor, DTensor) else tensor


def shard_like(full: torch.Tensor, like) -> torch.Tensor:
    """The part of the whole tensor ``full`` that this process holds of ``like`` (a DTensor sharded on dim 0 as
    FSDP2 shards: ``torch.chunk`` order), as a DTensor; ``full`` itself when ``like`` is a plain tensor."""
    from torch.distributed.tensor import DTensor

    if not isinstance(like, DTensor):
        return full
    mesh = like.device_mesh
    chunks = full.chunk(mesh.size(), dim=0) if full.ndim else (full,)
    rank = mesh.get_local_rank()
    local = chunks[rank] if rank < len(chunks) else full[:0]
    local = local.to(device=local_part(like).device, dtype=like.dtype).contiguous()
    return DTensor.from_local(local, mesh, like.placements, run_check=False, shape=like.shape, stride=like.stride())


# what ``accelerate launch`` puts in the environment for a DEEPSPEED or FSDP config (accelerate.utils.launch)
LAUNCHER_KEYS = ("ACCELERATE_USE_DEEPSPEED", "ACCELERATE_USE_FSDP")


def launcher_sharding(env) -> str | None:
    """The --sharding an ``accelerate launch`` config asks for (distributed_type DEEPSPEED: zero_stage 2 or 3, CPU
    offload of the optimizer; FSDP: FSDP2, offload_params), or None (MULTI_GPU, torchrun, one process)."""
    if env.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true":
        if env.get("ACCELERATE_DEEPSPEED_CONFIG_FILE"):
            raise CoMoViError(
                f"the accelerate config names a DeepSpeed config file ({env['ACCELERATE_DEEPSPEED_CONFIG_FILE']}); "
                "comovi_core.training.train builds DeepSpeed's config from its own flags: give zero_stage and "
                "offload_optimizer_device in the accelerate config instead (configs/accelerate/zero3_8_gpus.yaml)"
            )
        stage = env.get("ACCELERATE_DEEPSPEED_ZERO_STAGE", "2")
        offload = env.get("ACCELERATE_DEEPSPEED_OFFLOAD_OPTIMIZER_DEVICE", "none").lower()
        if stage not in ("2", "3") or offload not in ("none", "cpu"):
            raise CoMoViError(
                f"the accelerate config asks for DeepSpeed ZeRO stage {stage} with optimizer offload {offload}: "
                "comovi_core.training.train runs zero_stage 2 or 3, offload_optimizer_device none or cpu"
            )
        return f"zero{stage}" + ("_offload" if offload == "cpu" else "")
    if env.get("ACCELERATE_USE_FSDP", "").lower() == "true":
        return "fsdp2_offload" if env.get("FSDP_OFFLOAD_PARAMS", "").lower() == "true" else "fsdp2"
    return None
