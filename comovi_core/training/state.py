"""A training run on disk: checkpoints, the state to resume from, and per-step metrics; every file atomic.

A run folder (``--out``) holds, for each saved step N (6 digits)::

    step_N.safetensors, step_N.json   the model for ``load_model`` (in the training compute dtype) + its meta;
                                      a --lora run: only the adapters, a LoRA file (``comovi_core.model.lora``)
    state_N/                          what resuming needs, nothing of which is in the checkpoint:
        trainable.safetensors         fp32 master weights of the trained parameters, by parameter name
        optimizer.safetensors         AdamW moments and step counts, ``<parameter name>/<key>``
                                      (--sharding fsdp2, zero*: ``trainable-rank<r>-of-<n>.safetensors`` and
                                      ``optimizer-rank<r>-of-<n>.safetensors``, each process's shard of every tensor,
                                      dim 0 in rank order; ``StateTensors`` joins them, so a run resumes with any
                                      process count or strategy; ``python -m comovi_core.consolidate`` writes one file)
        rng_<rank>.safetensors        each process's torch RNG state (CPU, and CUDA when there is one)
        state.json                    step, optimizer hyper-parameters, LR scheduler, training config
    metrics.jsonl                     one JSON line per optimizer step (see ``MetricsLog``)

Everything is written under a name starting with "." and renamed into place only when complete: the step file
first, then the state folder. A run killed mid-save leaves hidden debris that ``load_model`` and ``latest_state``
ignore, and a ``state_N/`` folder always has its ``step_N`` checkpoint. The data position is the step itself: the
clip, noise, timestep and text dropout of every micro-batch derive from (--seed, step, micro-batch index).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
import shutil
from pathlib import Path
from typing import Any, Protocol

import torch
from safetensors.torch import save_file

from ..errors import CoMoViError
from ..files.atomic import atomic_path
from ..files.weights import checked_safe_open, read_safetensors
from ..model.saving import save_checkpoint
from .distributed import compute_dtype
from .sharding import local_part, shard_like

log = logging.getLogger("comovi_core.training.train")

STATE_FIX = "resume from an older state (--resume RUN/state_N) or start again with --resume none"
STATE_NAME = re.compile(r"state_(\d{6,})")
# config fields that may change between a run and its resumption (they do not change what step N computes; the
# sharding strategy changes it within float rounding)
RESUMABLE_CHANGES = ("steps", "save_every", "log_every", "sharding", "validate_every", "validate_steps")
SHARD_NAME = re.compile(r"(?P<stem>\w+)-rank(?P<rank>\d+)-of-(?P<count>\d+)\.safetensors")


def shard_file_name(stem: str, rank: int, count: int) -> str:
    return f"{stem}-rank{rank:05d}-of-{count:05d}.safetensors"


class StateTensors:
    """The tensors of a state file by name, read one at a time (a real-size state is ~73 GB): ``<stem>.safetensors``
    or the shards every process of a sharded run wrote, joined on dim 0 in rank order (FSDP2's ``torch.chunk``
    split)."""

    def __init__(self, state_dir: Path, stem: str):
        single = state_dir / f"{stem}.safetensors"
        shards = sorted(
            (int(m["rank"]), int(m["count"]), p)
            for p in state_dir.glob(f"{stem}-rank*-of-*.safetensors")
            if (m := SHARD_NAME.fullmatch(p.name))
        )
        if single.is_file():
            files = [single]
        elif (
            shards
            and [r for r, _, _ in shards] == list(range(shards[0][1]))
            and {c for _, c, _ in shards} == {len(shards)}
        ):
            files = [p for _, _, p in shards]
        else:
            found = ", ".join(p.name for _, _, p in shards) or "none"
            raise CoMoViError(
                f"{state_dir}: {stem}.safetensors or a complete set of its shards is missing (found: {found}): "
                f"{STATE_FIX}"
            )
        self.handles = [checked_safe_open(f, STATE_FIX) for f in files]

    def keys(self) -> list[str]:
        return list(self.handles[0].keys())

    def __getitem__(self, name: str) -> torch.Tensor:
        parts = [h.get_tensor(name) for h in self.handles]
        return parts[0] if len(parts) == 1 or parts[0].ndim == 0 else torch.cat(parts, dim=0)


def latest_state(out: Path) -> Path | None:
    """The newest complete ``state_N/`` folder in ``out`` (hidden partial folders never count), or None."""
    if not out.is_dir():
        return None
    found = [
        (int(m.group(1)), p)
        for p in out.iterdir()
        if p.is_dir() and (m := STATE_NAME.fullmatch(p.name)) and (p / "state.json").is_file()
    ]
    return max(found)[1] if found else None


def resolve_resume(resume: str | Path | None, out: Path) -> Path | None:
    """``--resume``: "latest" (default) -> the newest state in ``out`` (None: start fresh); "none" -> None;
    otherwise a ``state_N`` folder or its ``step_N.safetensors`` checkpoint."""
    if resume is None or str(resume) == "latest":
        return latest_state(out)
    if str(resume) == "none":
        return None
    path = Path(resume)
    if m := re.fullmatch(r"step_(\d+)\.safetensors", path.name):
        path = path.parent / f"state_{m.group(1)}"
    if not (path / "state.json").is_file():
        raise CoMoViError(
            f"--resume {resume}: no resumable state there (a state_NNNNNN folder with state.json, "
            "written next to step_NNNNNN.safetensors); give such a folder, --resume latest, or "
            "--resume none"
        )
    return path


def refuse_overwrite(out: Path) -> None:
    """A fresh run must not overwrite another run's checkpoints under the same names."""
    taken = sorted(p.name for p in out.glob("step_*.safetensors")) if out.is_dir() else []
    if taken:
        raise CoMoViError(
            f"{out} already holds checkpoints ({taken[-1]}, ...) and this run would overwrite them: "
            "continue that run with --resume latest (needs its state_NNNNNN folders) or choose another "
            "--out"
        )


STEMS = ("trainable", "optimizer")


def _rng_tensors() -> dict[str, torch.Tensor]:
    tensors = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        tensors.update({f"cuda_{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    return tensors


def _flatten(prefix: str, value, tensors: dict, values: dict) -> None:
    """One optimizer state entry: tensors (this process's part) to ``tensors``, nested dicts (bitsandbytes' quantisation
    state) key by key, anything else (a Python step count) to ``values`` (JSON)."""
    if isinstance(value, torch.Tensor):
        tensors[prefix] = local_part(value.detach()).contiguous()
    elif isinstance(value, dict):
        for key, item in value.items():
            _flatten(f"{prefix}/{key}", item, tensors, values)
    else:
        values[prefix] = value


def _optimizer_to_files(optimizer, names: list[str]) -> tuple[dict[str, torch.Tensor], list[dict], dict]:
    """(tensors by ``<parameter name>/<key>[/<sub key>]``, param groups, non-tensor values by the same keys)."""
    state = optimizer.state_dict()
    tensors, values = {}, {}
    for i, per_param in state["state"].items():
        _flatten(names[i], per_param, tensors, values)
    seen = set()  # safetensors refuses shared storage: bitsandbytes shares its quantisation maps between parameters
    for key, tensor in tensors.items():
        if tensor.numel() and tensor.data_ptr() in seen:
            tensors[key] = tensor.clone()
        seen.add(tensor.data_ptr())
    return tensors, state["param_groups"], values


def _nest(per_param: dict, key: str, value) -> None:
    """Put ``value`` at the path ``key`` ("exp_avg", or "__bnb_optimizer_quant_state__/state1") of one parameter."""
    *path, last = key.split("/")
    for part in path:
        per_param = per_param.setdefault(part, {})
    per_param[last] = value


def save_model(model, path: Path, cfg, meta: dict, dtype: torch.dtype, state: dict | None = None) -> None:
    """The step checkpoint: the whole model for ``load_model`` (``state``: its gathered tensors when sharded), or for
    a --lora run only its adapters (a LoRA file for ``apply_lora`` / generate --lora; fp32, a few MB)."""
    if not cfg.lora:
        save_checkpoint(model, path, "comovi", meta, dtype, state=state)
        return
    from ..model.lora import parse_targets, save_lora
    from .step import lora_alpha

    save_lora(
        model,
        path,
        {
            "rank": cfg.lora,
            "alpha": lora_alpha(cfg),
            "targets": list(parse_targets(cfg.lora_targets, cfg.stage)),
            "preset": cfg.preset,
            "stage": cfg.stage,
            "config": model.comovi_config.to_dict(),
            **meta,
        },
    )


class Resumable(Protocol):
    """What ``save_training_state`` and ``load_training_state`` need of the run: its sharding strategy
    (``strategies.Strategy``), which knows where the model, the fp32 masters and the optimizer state live."""

    accelerator: Any
    cfg: Any
    named: list[tuple[str, torch.nn.Parameter]]  # the trained parameters, by name
    schedule: Any  # the LR scheduler
    sharded_state: bool  # every process writes its own shards of the state (else process 0 writes it whole)

    def unwrapped_model(self) -> torch.nn.Module: ...

    def gathered_model(self) -> dict[str, torch.Tensor] | None:
        """The whole model's tensors on process 0 ({} elsewhere) when no process holds them whole; None when the
        model's own tensors are whole. Collective."""

    def state_parts(self) -> tuple[dict, dict, list[dict], dict]:
        """(fp32 masters, optimizer tensors by ``<name>/<key>``, param groups, non-tensor optimizer values): what this
        process writes."""

    def restore(self, masters: StateTensors, optimizer_tensors: StateTensors, info: dict) -> None:
        """Set the fp32 masters and the optimizer state from a saved state (any strategy's, any process count)."""


def save_training_state(run: Resumable, out: Path, *, step: int, loss: float) -> None:
    """Write ``step_N.safetensors`` (+ .json) and ``state_N/`` atomically. Called by every process; with a sharded
    state (``run.sharded_state``) every process writes its own shards of the state and process 0 the gathered model."""
    accelerator, cfg, named_params = run.accelerator, run.cfg, run.named
    tmp, final = out / f".state_{step:06d}.partial", out / f"state_{step:06d}"
    rank, count = accelerator.process_index, accelerator.num_processes
    sharded = run.sharded_state
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    gathered = run.gathered_model()  # collective where the parameters are split: every process takes part
    accelerator.wait_for_everyone()
    save_file(_rng_tensors(), str(tmp / f"rng_{rank}.safetensors"))
    names = [n for n, _ in named_params]
    if sharded or accelerator.is_main_process:
        masters, tensors, groups, values = run.state_parts()  # collective under ZeRO (every process writes)
        stems = {stem: shard_file_name(stem, rank, count) if sharded else f"{stem}.safetensors" for stem in STEMS}
        save_file(masters, str(tmp / stems["trainable"]))
        save_file(tensors, str(tmp / stems["optimizer"]))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        meta = {"step": step, "train": dataclasses.asdict(cfg), "loss": loss, "processes": count}
        path = out / f"step_{step:06d}.safetensors"
        save_model(run.unwrapped_model(), path, cfg, meta, compute_dtype(cfg), gathered)
        info = {
            "step": step,
            "loss": loss,
            "names": names,
            "param_groups": groups,
            "optimizer_values": values,
            "scheduler": run.schedule.state_dict(),
            "train": dataclasses.asdict(cfg),
            "processes": count,
            "shards": count if sharded else 1,
            "shapes": {n: list(getattr(p, "ds_shape", p.shape)) for n, p in named_params},  # zero3: split
        }
        (tmp / "state.json").write_text(json.dumps(info, indent=1))
        if final.exists():  # only when a run is resumed from before this step on purpose
            shutil.rmtree(final)
        os.replace(tmp, final)
        prune_states(out, cfg.keep_states)
    accelerator.wait_for_everyone()


def optimizer_state_parts(named_params, optimizer) -> tuple[dict, dict, list[dict], dict]:
    """``Resumable.state_parts`` of a torch optimizer over (possibly FSDP2-sharded) parameters: this process's part of
    every fp32 master and optimizer tensor, the param groups and the non-tensor values."""
    masters = {n: local_part(p.detach()).float().contiguous() for n, p in named_params}
    tensors, groups, values = _optimizer_to_files(optimizer, [n for n, _ in named_params])
    return masters, tensors, groups, values


def restore_optimizer_state(named_params, optimizer, masters: StateTensors, flat: StateTensors, info: dict) -> None:
    """``Resumable.restore`` for a torch optimizer over (possibly FSDP2-sharded) parameters: each process takes its
    part of every saved tensor."""
    names = [n for n, _ in named_params]
    with torch.no_grad():
        for name, p in named_params:
            local_part(p).copy_(local_part(shard_like(masters[name], p)))
    params = dict(named_params)
    per_param: dict[int, dict] = {}
    for key in flat.keys():
        name, _, field = key.partition("/")
        value = flat[key]
        like = params[name]
        value = shard_like(value, like) if value.shape == like.shape and value.ndim else value  # moments: this part
        _nest(per_param.setdefault(names.index(name), {}), field, value)
    for key, value in info.get("optimizer_values", {}).items():
        name, _, field = key.partition("/")
        _nest(per_param.setdefault(names.index(name), {}), field, value)
    optimizer.load_state_dict({"state": per_param, "param_groups": info["param_groups"]})


def prune_states(out: Path, keep: int) -> list[str]:
    """Delete all but the newest ``keep`` complete ``state_N/`` folders (0: keep all); checkpoints stay.
    Called after a new state is complete, so a crash never leaves fewer than ``keep`` resumable states."""
    if keep < 1:
        return []
    states = sorted(
        (int(m.group(1)), p)
        for p in out.iterdir()
        if p.is_dir() and (m := STATE_NAME.fullmatch(p.name)) and (p / "state.json").is_file()
    )
    removed = []
    for _, path in states[:-keep]:
        shutil.rmtree(path)
        removed.append(path.name)
    if removed:
        log.info("removed older training states (--keep-states %d): %s", keep, ", ".join(removed))
    return removed


def load_training_state(run: Resumable, state_dir: Path) -> int:
    """Restore master weights, optimizer (through ``run.restore``), LR scheduler and RNG from ``state_dir``; returns
    its step."""
    cfg, named_params = run.cfg, run.named
    info = json.loads((state_dir / "state.json").read_text())
    now = dataclasses.asdict(cfg)
    saved = {**{f.name: f.default for f in dataclasses.fields(cfg)}, **info["train"]}  # fields added since: defaults
    changed = {k: (saved.get(k), v) for k, v in now.items() if saved.get(k) != v and k not in RESUMABLE_CHANGES}
    if any(k in changed for k in ("preset", "stage", "lora", "lora_alpha", "lora_targets")):

        def lora(c):
            return f"LoRA rank {c.get('lora', 0)} {c.get('lora_targets') or ''}".rstrip()

        raise CoMoViError(
            f"{state_dir} was saved by a run with {saved['preset']} stage {saved['stage']} "
            f"{lora(saved)}, this run is {cfg.preset} stage {cfg.stage} {lora(now)}: resume with "
            "the same --preset/--stage/--lora*, or --resume none"
        )
    if "optimizer" in changed:
        raise CoMoViError(
            f"{state_dir} holds {saved['optimizer']} state, this run uses --optimizer {cfg.optimizer}: resume with "
            f"--optimizer {saved['optimizer']}, or start a new run from its checkpoint (--init ... step_N.safetensors)"
        )
    if changed:
        log.warning("resuming %s with changed settings (saved -> now): %s", state_dir, changed)
    names = [n for n, _ in named_params]
    if names != info["names"]:
        raise CoMoViError(
            f"{state_dir}: its trained parameters differ from this run's ({len(info['names'])} vs "
            f"{len(names)}): resume with the model and stage it was saved with, or --resume none"
        )
    run.restore(StateTensors(state_dir, "trainable"), StateTensors(state_dir, "optimizer"), info)
    _restore_schedule_and_rng(state_dir, run.schedule, info, run.accelerator.process_index)
    return int(info["step"])


def _restore_schedule_and_rng(state_dir: Path, schedule, info: dict, process_index: int) -> None:
    schedule.load_state_dict(info["scheduler"])
    rng_file = state_dir / f"rng_{process_index}.safetensors"
    rng = read_safetensors(rng_file if rng_file.is_file() else state_dir / "rng_0.safetensors", STATE_FIX)
    torch.set_rng_state(rng["cpu"])
    cuda = [rng[k] for k in sorted(rng) if k.startswith("cuda_")]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    log.info("resumed from %s (step %d)", state_dir, info["step"])


def _step_of(line: str) -> float:
    """The step of a metrics line; a line cut by a kill counts as after every step."""
    try:
        return json.loads(line)["step"]
    except (ValueError, KeyError, TypeError):
        return math.inf


def remove_debris(out: Path) -> list[str]:
    """Delete what a killed save left behind (hidden ``.step_*`` files, ``.state_*.partial`` folders): a real-size
    checkpoint is tens of GB. Returns the names removed. Main process only, before training."""
    removed = []
    for p in sorted(out.glob(".st*")) if out.is_dir() else []:
        if p.is_dir() and re.fullmatch(r"\.state_\d+\.partial", p.name):
            shutil.rmtree(p)
        elif p.is_file() and re.fullmatch(r"\.step_\d+\.(safetensors|json)\..+", p.name):
            p.unlink()
        else:
            continue
        removed.append(p.name)
    if removed:
        log.info("removed %d leftovers of an interrupted save in %s: %s", len(removed), out, removed)
    return removed


class MetricsLog:
    """``metrics.jsonl`` in the run folder, one line per optimizer step (main process), and TensorBoard through
    accelerate's trackers when asked. On resume, lines after the resumed step (written before a kill) are dropped."""

    def __init__(self, out: Path, accelerator, start_step: int, tensorboard: bool, config: dict):
        self.path, self.accelerator, self.tensorboard = out / "metrics.jsonl", accelerator, tensorboard
        if accelerator.is_main_process and self.path.is_file():
            keep = [line for line in self.path.read_text().splitlines() if _step_of(line) <= start_step]
            with atomic_path(self.path) as tmp:
                tmp.write_text("".join(line + "\n" for line in keep))
        if tensorboard:
            accelerator.init_trackers("comovi_train", config={k: v for k, v in config.items() if v is not None})

    def log(self, step: int, values: dict[str, float]) -> None:
        if not all(math.isfinite(v) for v in values.values()):
            log.warning("step %d: non-finite metrics %s", step, values)
        if self.accelerator.is_main_process:
            with open(self.path, "a") as fh:
                fh.write(json.dumps({"step": step, **values}) + "\n")
        if self.tensorboard:
            self.accelerator.log(values, step=step)

    def close(self) -> None:
        if self.tensorboard:
            self.accelerator.end_training()
