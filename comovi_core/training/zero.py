"""DeepSpeed ZeRO data parallel training (``--sharding zero2 | zero2_offload | zero3 | zero3_offload``).

zero2 splits the AdamW state and the gradients over the processes (each still holds the whole model in the compute
dtype); zero3 also splits the parameters, so a block's full weights exist only while it runs. ``_offload`` keeps the
split optimizer state (zero3: the parameters too) in CPU memory. Under --precision bf16 DeepSpeed holds the whole
model in bf16, the trained parameters included, with fp32 master partitions in the optimizer: the forward computes
in bf16 as under FSDP2 (norm weights included), not under autocast over fp32 masters as DDP does. Floating buffers
(RoPE tables) go back to the dtype they had. zero3 builds the model split (``build_split``: process 0
reads the weights, the others start from the meta device); zero2, which keeps whole bf16 weights on every GPU
anyway, builds it whole in every process (22 GB of host memory each at real size).

The loop stays ours (``train.train`` through ``strategies.ZeROStrategy``): the engine's backward and step run once
per micro-batch, and DeepSpeed reduces and updates on a step's last one. It clips at --clip. The LR schedule is ours,
on the same param groups.

States use our format, not DeepSpeed's pickled checkpoints. Each process gathers every trained tensor's fp32 master
and AdamW moments (DeepSpeed's ``safe_get_full_*``) and writes its dim-0 chunk, as the FSDP2 path does. So a ZeRO
state resumes under DDP, FSDP2 or the other ZeRO stage, with any process count, and ``comovi_core.training.consolidate``
joins it. Checkpoints (``step_N.safetensors``) are gathered on process 0.

Needs DeepSpeed: ``pip install --no-build-isolation deepspeed`` (its build imports torch).
"""

from __future__ import annotations

import importlib.util
import logging
import os

import torch

from ..errors import CoMoViError
from .distributed import ensure_process_group, zero_stage

MOMENTS = ("exp_avg", "exp_avg_sq")
log = logging.getLogger("comovi_core.training.train")  # torch AdamW's per-element state


def require_deepspeed(sharding: str) -> None:
    if importlib.util.find_spec("deepspeed") is None:
        raise CoMoViError(
            f"--sharding {sharding} needs DeepSpeed: pip install --no-build-isolation deepspeed (its build imports "
            "torch); or shard with torch alone: --sharding fsdp2 (fsdp2_offload)"
        )


def zero_config(cfg) -> dict:
    """DeepSpeed's config for this run: batch 1 per micro-batch, --grad-accum, --clip, the ZeRO stage and offload."""
    pin = torch.cuda.is_available()
    zero: dict = {"stage": zero_stage(cfg)}
    if cfg.sharding.endswith("_offload"):
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": pin}
        if zero["stage"] == 3:
            zero["offload_param"] = {"device": "cpu", "pin_memory": pin}
    return {
        "train_micro_batch_size_per_gpu": 1,
        "gradient_accumulation_steps": cfg.grad_accum,
        "gradient_clipping": cfg.clip,
        "zero_optimization": zero,
        "bf16": {"enabled": cfg.precision == "bf16"},
        "zero_allow_untested_optimizer": True,  # torch's AdamW on DeepSpeed's flat fp32 partitions
        "zero_force_ds_cpu_optimizer": False,  # offload: torch's AdamW runs on the CPU (no compiled DeepSpeed op)
        "steps_per_print": 2**31 - 1,
    }


def zero_engine(model, optimizer, cfg, device: torch.device):
    """Hand ``model`` and its ``optimizer`` to DeepSpeed; returns the engine (call it like the model)."""
    deepspeed = _deepspeed(cfg, device)
    dtypes = {name: b.dtype for name, b in model.named_buffers()}
    engine, *_ = deepspeed.initialize(model=model, optimizer=optimizer, config=zero_config(cfg))
    for name, buffer in list(engine.module.named_buffers()):
        if buffer.dtype != dtypes[name]:
            owner, _, leaf = name.rpartition(".")
            engine.module.get_submodule(owner)._buffers[leaf] = buffer.to(dtypes[name])
    return engine


def _deepspeed(cfg, device: torch.device):
    """DeepSpeed, imported once the processes are a group (one process: a group of one, LOCAL_RANK 0)."""
    require_deepspeed(cfg.sharding)
    ensure_process_group(device)
    os.environ.setdefault("LOCAL_RANK", "0")  # one process started without a launcher
    import deepspeed

    logging.getLogger("DeepSpeed").setLevel(logging.WARNING)
    return deepspeed


def build_split(model, cfg, device: torch.device, is_main: bool):
    """zero3: the model built again under ``deepspeed.zero.Init`` (each parameter split over the processes as it is
    made, so no process holds the whole model), filled from ``model``: process 0's full model; elsewhere the same
    model on the meta device (``load_training_model``). Every process calls it; returns the split model."""
    import torch.distributed as dist

    from ..model.loading import build_model

    deepspeed = _deepspeed(cfg, device)
    full = model.state_dict() if is_main else {}
    # the dtype follows the config (bf16 or fp32); torch.nn.functional.linear is left as it is
    with deepspeed.zero.Init(config_dict_or_path=zero_config(cfg), mem_efficient_linear=False):
        split = build_model(model.comovi_config, "cpu")
    for name, p in split.named_parameters():
        with deepspeed.zero.GatheredParameters([p], modifier_rank=0), torch.no_grad():
            if is_main:
                p.data.copy_(full[name])
    for name, buffer in split.named_buffers():  # not split: process 0's (RoPE tables are also made alike)
        if name in full:
            buffer.copy_(full[name])
        dist.broadcast(buffer.data, src=0)
    held = sum(p.ds_tensor.numel() for p in split.parameters())
    log.info(
        "process %d holds %d of the model's %d parameter values (zero3: split as built)",
        dist.get_rank(),
        held,
        sum(p.ds_numel for p in split.parameters()),
    )
    return split


def _chunk(full: torch.Tensor, rank: int, count: int) -> torch.Tensor:
    """This process's dim-0 part of ``full`` in FSDP2's ``torch.chunk`` order (``sharding.shard_like``)."""
    if not full.ndim:
        return full.detach().cpu().clone()
    chunks = full.chunk(count, dim=0)
    part = chunks[rank] if rank < len(chunks) else full[:0]
    return part.detach().cpu().contiguous().clone()


def _inner(engine):
    """DeepSpeed's ZeRO optimizer and the torch AdamW inside it (which steps DeepSpeed's flat fp32 partitions)."""
    return engine.optimizer, engine.optimizer.optimizer


def state_parts(engine, named, rank: int, count: int) -> tuple[dict, dict]:
    """(fp32 masters, AdamW tensors by ``<name>/<key>``): this process's chunk of every trained tensor. Collective."""
    from deepspeed.utils import safe_get_full_fp32_param, safe_get_full_optimizer_state

    _, inner = _inner(engine)
    step = next(iter(inner.state.values()))["step"]  # every flat partition steps together
    masters, moments = {}, {}
    for name, p in named:
        masters[name] = _chunk(safe_get_full_fp32_param(p).float(), rank, count)
        for key in MOMENTS:
            moments[f"{name}/{key}"] = _chunk(safe_get_full_optimizer_state(p, key).float(), rank, count)
        moments[f"{name}/step"] = torch.as_tensor(step, dtype=torch.float32).detach().cpu().clone()
    return masters, moments


def param_groups(engine, saved_groups: list[dict]) -> list[dict]:
    """The optimizer's param groups as torch's ``state_dict`` lists them (``saved_groups``: the client optimizer's,
    taken before DeepSpeed), with the live hyper-parameters (the learning rate)."""
    _, inner = _inner(engine)
    return [
        {k: (v if k == "params" else live.get(k, v)) for k, v in group.items()}
        for group, live in zip(saved_groups, inner.param_groups)
    ]


def load_state(engine, named, masters, optimizer_tensors, groups: list[dict], stage: int) -> None:
    """Set the fp32 masters, AdamW moments and step, the model's own (compute dtype) weights and the groups'
    hyper-parameters from full tensors (``StateTensors`` of any strategy's state). Collective."""
    import deepspeed
    import torch.distributed as dist
    from deepspeed.utils import safe_set_full_fp32_param, safe_set_full_optimizer_state

    zero, inner = _inner(engine)
    # a DDP/FSDP2 state has no entry for a parameter that never had a gradient (torch's AdamW skips it): zeros
    saved = set(optimizer_tensors.keys())
    step = max(float(optimizer_tensors[k]) for k in saved if k.endswith("/step"))
    # torch's AdamW creates its state at the first step; DeepSpeed links each parameter's piece of it then
    flats = [f for g in inner.param_groups for f in g["params"]]  # ZeRO-2's; ZeRO-3 fills its groups per step:
    flats += list(getattr(zero, "fp32_partitioned_groups_flat", []))
    for flat in flats:
        inner.state[flat] = {"step": torch.tensor(step), **{k: torch.zeros_like(flat) for k in MOMENTS}}
    if hasattr(zero, "_lazy_init_hp_params_optimizer_state"):  # ZeRO-2
        zero._hp_optimizer_states_linked = False
        zero._lazy_init_hp_params_optimizer_state()
    for name, p in named:
        device = p.device
        full = masters[name].float()
        safe_set_full_fp32_param(p, full.to(device))
        for key in MOMENTS:
            moment = optimizer_tensors[f"{name}/{key}"].float() if f"{name}/{key}" in saved else torch.zeros_like(full)
            safe_set_full_optimizer_state(p, moment.to(device), key)
        with deepspeed.zero.GatheredParameters([p], modifier_rank=0, enabled=stage == 3), torch.no_grad():
            if stage == 2 or dist.get_rank() == 0:
                p.data.copy_(full.to(p.dtype))
    for live, group in zip(inner.param_groups, groups):
        live.update({k: v for k, v in group.items() if k != "params"})


def gathered_model_state(engine, stage: int, is_main: bool) -> dict[str, torch.Tensor]:
    """The whole model's state on process 0 (CPU), {} on the others; under zero3 gathered one parameter at a time
    (every process takes part)."""
    import deepspeed

    module = engine.module
    if stage == 2:
        return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()} if is_main else {}
    keys, params, state = list(module.state_dict().keys()), dict(module.named_parameters()), {}
    buffers = dict(module.named_buffers())
    for key in keys:
        if key in params:
            with deepspeed.zero.GatheredParameters([params[key]]):
                if is_main:
                    state[key] = params[key].detach().cpu().clone()
        elif is_main:
            state[key] = buffers[key].detach().cpu().clone()
    return state
