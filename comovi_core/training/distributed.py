"""What the sharding strategies and the training step share: the strategy names, the compute dtype, the process group.

``step`` (the training config), ``sharding`` (FSDP2), ``zero`` (DeepSpeed ZeRO) and ``strategies`` import this module;
it imports none of them.
"""

from __future__ import annotations

import torch

ZERO_SHARDINGS = ("zero2", "zero2_offload", "zero3", "zero3_offload")
SHARDINGS = ("ddp", "fsdp2", "fsdp2_offload", *ZERO_SHARDINGS)


def is_sharded(cfg) -> bool:
    """--sharding fsdp2 or fsdp2_offload (torch FSDP2)."""
    return cfg.sharding.startswith("fsdp2")


def is_zero(cfg) -> bool:
    """--sharding zero2*, zero3* (DeepSpeed ZeRO)."""
    return cfg.sharding.startswith("zero")


def zero_stage(cfg) -> int:
    return 3 if cfg.sharding.startswith("zero3") else 2


def splits_parameters(cfg) -> bool:
    """Whether no process holds the whole model (fsdp2*, zero3*): every process then takes part in whatever reads it."""
    return is_sharded(cfg) or (is_zero(cfg) and zero_stage(cfg) == 3)


def compute_dtype(cfg) -> torch.dtype:
    return torch.bfloat16 if cfg.precision == "bf16" else torch.float32


def ensure_process_group(device: torch.device) -> None:
    """One process (no torchrun): a process group of one, e.g. for fsdp2_offload or zero3_offload on one GPU."""
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(
            "nccl" if device.type == "cuda" else "gloo", store=dist.HashStore(), rank=0, world_size=1
        )
