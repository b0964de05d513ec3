"""How the training loop runs over its processes: one strategy per --sharding, chosen once (``make_strategy``).

A strategy wraps the model and makes its optimizer and LR schedule (``prepare``, which also restores a saved state),
runs a micro-batch's backward (gradients are averaged over the processes on a step's last micro-batch only), makes a
step's update (clipped at --clip; it returns the gradient norm before clipping and the learning rate it used) and
saves the resumable state (``save``; ``state`` writes the files, the strategy says where the tensors live).
``train.train`` drives any of them the same way::

    strategy = make_strategy(cfg, accelerator)
    done = strategy.prepare(model, resume)
    for step in ...:
        for k in range(cfg.grad_accum):
            with strategy.micro_batch(last=k == cfg.grad_accum - 1):
                strategy.backward(loss_of(strategy.model))
        grad_norm, lr = strategy.step()
        strategy.save(out, step=step, loss=loss)

``DDPStrategy`` (ddp): every process holds the whole model; accelerate's DistributedDataParallel averages the
gradients and process 0 writes the state. ``FSDP2Strategy`` (fsdp2, fsdp2_offload): torch FSDP2 shards parameters,
gradients and AdamW state (``sharding``). ``ZeROStrategy`` (zero2*, zero3*): DeepSpeed ZeRO (``zero``); its engine
reduces, clips and updates on a step's last micro-batch. Sharded, every process writes its own shards of the state.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch

from ..errors import CoMoViError
from .distributed import is_sharded, is_zero, splits_parameters, zero_stage
from .state import (
    StateTensors,
    load_training_state,
    optimizer_state_parts,
    restore_optimizer_state,
    save_training_state,
)
from .step import TrainConfig, make_optimizer, prepare_for_training


def make_accelerator(cfg: TrainConfig, out: Path, tensorboard: bool):
    """accelerate's view of the processes (device, rank, collective reductions, mixed precision, trackers)."""
    from accelerate import Accelerator, DistributedDataParallelKwargs
    from accelerate.utils import ProjectConfiguration, is_tensorboard_available

    if tensorboard and not is_tensorboard_available():
        raise CoMoViError(
            "--tensorboard needs the tensorboard package: pip install tensorboard "
            "(or drop --tensorboard; metrics.jsonl is always written)"
        )
    return Accelerator(
        cpu=not torch.cuda.is_available(),  # without GPUs, processes talk over gloo
        mixed_precision="bf16" if cfg.precision == "bf16" else "no",
        log_with="tensorboard" if tensorboard else None,
        project_config=ProjectConfiguration(project_dir=str(out), logging_dir=str(out / "tensorboard")),
        # stage 2: the 3D head sees no gradient on clips without SMPL
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=cfg.stage == 2)],
    )


class Strategy:
    """What every strategy shares; the subclasses fill in the model wrapping, the gradient communication, the update
    and where the state's tensors live (``state.Resumable``).

    After ``prepare``: ``model`` (call it for the forward pass), ``named`` (the trained parameters by name),
    ``optimizer``, ``schedule``. ``splits_parameters``: no process holds the whole model, so every process takes part
    in whatever reads it (validation). ``sharded_state``: every process writes its own shards of the state."""

    sharded_state = True

    def __init__(self, cfg: TrainConfig, accelerator):
        self.cfg, self.accelerator, self.device = cfg, accelerator, accelerator.device
        self.splits_parameters = splits_parameters(cfg)
        self.model = self.optimizer = self.schedule = None
        self.named: list[tuple[str, torch.nn.Parameter]] = []
        self.params: list[torch.nn.Parameter] = []

    def prepare(self, model, resume: Path | None) -> int:
        """Wrap ``model`` for training, make AdamW over its trained parameters and the warm-up schedule, and restore
        the state folder ``resume`` (None: from scratch). Returns the step reached (0 from scratch)."""
        self.model, self.named = self._wrap_model(model)
        self.params = [p for _, p in self.named]
        self.optimizer = make_optimizer(self.params, self.cfg)
        cfg = self.cfg
        self.schedule = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: min(1.0, (step + 1) / max(1, cfg.warmup))
        )
        self._wrap_optimizer()
        return 0 if resume is None else load_training_state(self, Path(resume))

    def _wrap_model(self, model) -> tuple[torch.nn.Module, list[tuple[str, torch.nn.Parameter]]]:
        """(the model to train, its trained parameters by name): trained parameters fp32 masters, the rest frozen."""
        return model, prepare_for_training(model, self.cfg)

    def _wrap_optimizer(self) -> None:
        """Hand the optimizer to whatever steps it (after the LR schedule is made on it)."""

    def unwrapped_model(self) -> torch.nn.Module:
        return self.accelerator.unwrap_model(self.model)

    def micro_batch(self, last: bool) -> contextlib.AbstractContextManager:
        """Wraps a micro-batch's forward and backward; gradients are averaged over the processes when ``last``."""
        return contextlib.nullcontext()

    def backward(self, loss: torch.Tensor) -> None:
        self.accelerator.backward(loss)

    def step(self) -> tuple[float, float]:
        """The step's update after its micro-batches: (gradient norm before clipping, the learning rate it used)."""
        lr = self.schedule.get_last_lr()[0]
        grad_norm = self._update()
        self.schedule.step()
        return grad_norm, lr

    def _update(self) -> float:
        grad_norm = self._clip_gradients()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return grad_norm

    def _clip_gradients(self) -> float:
        """Clip the gradient norm over all processes at --clip; returns the norm before clipping."""
        raise NotImplementedError

    def save(self, out: Path, *, step: int, loss: float) -> None:
        """Write the checkpoint and the resumable state of ``step`` (every process calls it)."""
        save_training_state(self, out, step=step, loss=loss)

    # state.Resumable: where the state's tensors live
    def gathered_model(self) -> dict[str, torch.Tensor] | None:
        return None

    def state_parts(self) -> tuple[dict, dict, list[dict], dict]:
        return optimizer_state_parts(self.named, self.optimizer)

    def restore(self, masters: StateTensors, optimizer_tensors: StateTensors, info: dict) -> None:
        restore_optimizer_state(self.named, self.optimizer, masters, optimizer_tensors, info)


class DDPStrategy(Strategy):
    """--sharding ddp: accelerate's DistributedDataParallel; every process holds the whole model and AdamW state."""

    sharded_state = False  # every process holds the same state: process 0 writes it

    def prepare(self, model, resume: Path | None) -> int:
        done = super().prepare(model, resume)
        self.model, self.optimizer = self.accelerator.prepare(self.model, self.optimizer)
        return done

    def micro_batch(self, last: bool) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext() if last else self.accelerator.no_sync(self.model)

    def _clip_gradients(self) -> float:
        return float(self.accelerator.clip_grad_norm_(self.params, self.cfg.clip))


class FSDP2Strategy(Strategy):
    """--sharding fsdp2, fsdp2_offload: torch FSDP2 (``sharding``); FSDP2 does the gradient communication."""

    def _wrap_model(self, model):
        from .sharding import load_from_rank0, shard_model

        named = prepare_for_training(model, self.cfg)
        # FSDP2 puts new (sharded) parameters in place: look the trained ones up again by name
        trained = {n for n, _ in named}
        full = model.state_dict() if self.accelerator.is_main_process else {}
        load_from_rank0(shard_model(model, self.cfg, self.device), full, self.device)
        del full
        return model, [(n, p) for n, p in model.named_parameters() if n in trained]

    def micro_batch(self, last: bool) -> contextlib.AbstractContextManager:
        self.model.set_requires_gradient_sync(last)
        return contextlib.nullcontext()

    def _clip_gradients(self) -> float:
        from torch.distributed.tensor import DTensor

        norm = torch.nn.utils.clip_grad_norm_(self.params, self.cfg.clip)  # over the shards of every process
        return float(norm.full_tensor() if isinstance(norm, DTensor) else norm)

    def gathered_model(self) -> dict[str, torch.Tensor]:
        from .sharding import full_state_dict

        return full_state_dict(self.model)


class ZeROStrategy(Strategy):
    """--sharding zero2*, zero3*: DeepSpeed ZeRO (``zero``). Its engine (``model``) runs backward and step once per
    micro-batch, and reduces, clips and updates on a step's last one; the LR schedule stays ours, on the same param
    groups."""

    def _wrap_model(self, model):
        from .zero import build_split

        if zero_stage(self.cfg) == 3:  # split as it is built: no process holds the whole model
            model = build_split(model, self.cfg, self.device, self.accelerator.is_main_process)
        return model, prepare_for_training(model, self.cfg)

    def _wrap_optimizer(self) -> None:
        from .zero import zero_engine

        self.groups = self.optimizer.state_dict()["param_groups"]  # as torch lists them, for the state
        self.model = self.engine = zero_engine(self.model, self.optimizer, self.cfg, self.device)

    def backward(self, loss: torch.Tensor) -> None:
        # DeepSpeed counts micro-batches in step(): it reduces and updates on the last one
        self.engine.backward(loss, scale_wrt_gas=False)
        self.engine.step()

    def _update(self) -> float:  # clipped and stepped by the engine on the last micro-batch
        return float(self.engine.get_global_grad_norm())

    def gathered_model(self) -> dict[str, torch.Tensor]:
        from .zero import gathered_model_state

        return gathered_model_state(self.engine, zero_stage(self.cfg), self.accelerator.is_main_process)

    def state_parts(self) -> tuple[dict, dict, list[dict], dict]:
        from .zero import param_groups, state_parts

        rank, count = self.accelerator.process_index, self.accelerator.num_processes
        masters, tensors = state_parts(self.engine, self.named, rank, count)
        return masters, tensors, param_groups(self.engine, self.groups), {}

    def restore(self, masters: StateTensors, optimizer_tensors: StateTensors, info: dict) -> None:
        from .zero import load_state

        load_state(self.engine, self.named, masters, optimizer_tensors, info["param_groups"], zero_stage(self.cfg))


def make_strategy(cfg: TrainConfig, accelerator) -> Strategy:
    """The strategy of --sharding."""
    if is_zero(cfg):
        return ZeROStrategy(cfg, accelerator)
    if is_sharded(cfg):
        return FSDP2Strategy(cfg, accelerator)
    return DDPStrategy(cfg, accelerator)
