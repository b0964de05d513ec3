"""Fine-tune CoMoVi (docs/training.md): stage 1 trains the motion branch, stage 2 the coupling (+ 3D head).

Tiny CPU example (synthetic clips of the stand-in mannequin, random tiny weights):

    python -m comovi_core.train --preset tiny --synthetic 4 --stage 1 --steps 20 --out runs/tiny

Real run (the base Wan2.2 and optionally a CoMoVi checkpoint to start from; SMPL for the stage-2 loss):

    python -m comovi_core.train --init models/Wan2.2-TI2V-5B-Diffusers --data clips/ --stage 1 --steps 2000 \\
        --out runs/s1
    python -m comovi_core.train --init models/Wan2.2-TI2V-5B-Diffusers runs/s1/step_002000.safetensors \\
        --data clips/ --stage 2 --steps 4000 --body-model models/smpl --out runs/s2

From a prepared cache (``python -m comovi_core.prepare``: VAE latents, text embeddings and SMPL targets in shards),
training loads neither the VAE nor the text encoder and streams one shard at a time (bounded memory):

    python -m comovi_core.prepare --base models/Wan2.2-TI2V-5B-Diffusers --data clips/ --out cache/
    python -m comovi_core.train --init models/Wan2.2-TI2V-5B-Diffusers --cache cache/ --stage 1 --steps 2000 \\
        --out runs/s1

Several GPUs or machines: the loop runs through accelerate (data parallel; each process draws its own
micro-batches and gradients are averaged), so launch the same command with ``accelerate launch -m
comovi_core.train ...`` or ``torchrun --nproc_per_node N -m comovi_core.train ...``. Data order: epochs, each
visiting every clip once, shards (the clips in memory are one shard) in an order drawn from (--seed, epoch) and the
clips of a shard in an order drawn from (--seed, epoch, shard) (``training.data_order``); micro-batch
i of step t reads sample (t-1)*P*A + i and draws its noise, timestep and text dropout from seed (--seed, t, i),
where i counts over all P processes: N processes with --grad-accum A give the same update as one process with
--grad-accum N*A, and a cache of one shard the same as its clips held in memory.
--sharding picks how the processes share the model (``strategies``, one loop for all): ddp (default) copies it to
every process; fsdp2 shards parameters, gradients and AdamW state over the processes (torch FSDP2, ``sharding``;
fsdp2_offload: in host memory); zero2/zero3 hand them to DeepSpeed ZeRO (``zero``). Sharded states are written as
one shard per process and resume under any process count or strategy (``python -m comovi_core.consolidate`` joins
one into a single file).

Precision (--precision bf16, the default for real presets): the trained parameters are fp32 master weights (AdamW
updates of lr 2e-5 are below half a bf16 ulp of most weights and would vanish in pure bf16), the frozen ones are
held in bf16 (in fp32 the frozen RGB branch would double its memory, and accelerate's all-fp32 + autocast scheme
would do that), and the forward runs under bf16 autocast: the Accelerator gets ``mixed_precision="bf16"`` and
``training_step`` opens the same autocast itself, so it also holds for an unwrapped model (matmuls in bf16 whatever
the parameter dtype; gradients reach the fp32 masters in fp32). Checkpoints store the model in bf16 for inference;
the fp32 masters go to the resumable state. --precision fp32 (tiny's default) computes and stores all in fp32.
accelerate's state is process-wide: one precision per process.

Resuming (--resume, default latest): each save writes ``step_N.safetensors`` (the model) and ``state_N/`` (fp32
masters, optimizer, LR scheduler, RNG; the step is the data position), both atomically (``state``). A run
killed and started again with the same command continues from the newest complete state and ends bit-identical
to an unbroken one. A fresh run (--resume none) refuses an --out that already holds checkpoints. A --cache run resumes
from the same cache.
Data: every clip is checked (sizes, lengths, SMPL per frame; ``data.check_clips``) before anything loads;
a cache was checked when it was prepared, and its size and preset are checked against the flags.
Metrics: ``metrics.jsonl`` in --out (each loss, lr, grad norm, throughput), TensorBoard with --tensorboard.

Flow matching as Wan trains: x_t = (1 - s) x0 + s eps, the model predicts eps - x0 (the paper's t is
1 - s, with the opposite sign of the velocity); latent frame 0 is the clean start frame at timestep 0 and is left
out of the loss. Stage 1: only the motion branch learns, loss = L_motion (the release's stage-1 entry point does not
exist; this one runs). Stage 2: the zero-linears, the motion branch and the 3D head learn, the RGB branch is frozen,
loss = L_motion + L_video + L_smpl (6D pose MSE + SMPL vertex MSE + root-relative joint MSE). AdamW, linear
warm-up, gradient accumulation, clipping; checkpoints are safetensors + JSON (loadable by ``load_model``).

Recipe, as the release's stage scripts run it (where paper and release differ the release wins, docs/training.md):
--timestep-sampling uniform draws one of the 1000 training sigmas of the shift-5 flow-matching schedule uniformly,
without loss weighting (release ``--uniform_sampling``, weighting scheme "none"); logit_normal (the paper's
"SD3-style" density, on s directly, unshifted) is the option. AdamW eps 1e-10
(release ``--adam_epsilon``; torch's default is 1e-8), betas (0.9, 0.999), lr 2e-5 with 100 warm-up steps then
constant, weight decay 3e-2, clip 0.5; the release puts the RGB branch in the optimizer at lr 0, we freeze it.
Text dropout is 0 as in the release (its dropout line is commented out); --text-dropout p trains the empty prompt
with probability p, for classifier-free guidance. Other deviations from the release: every micro-batch draws from
its own seeded stream (the release gives each rank its own slice of timesteps), no masking of |error| > 50 in the
MSE, and the 3D head reads the last layer only (the paper also trains on random other layers). Sizes: one
--height/--width/--frames for --data; several --cache folders (one per size) train together as buckets, each clip
at its own size (batch 1 per micro-batch, so sizes never mix within one forward pass).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import sys
import time
from pathlib import Path

import torch

from ..body.smpl import load_body_model
from ..errors import CoMoViError, run_cli
from ..files.atomic import atomic_path, check_writable_folder
from ..inference.inputs import check_video_size
from ..model.config import get_config
from .distributed import compute_dtype, is_sharded, is_zero, splits_parameters
from .sharding import LAUNCHER_KEYS, launcher_sharding
from .step import LOSS_NAMES, TrainConfig, drop_text, latent_training_step, micro_batch_generator
from .strategies import make_accelerator, make_strategy
from .validate import Validation
from .zero import require_deepspeed

log = logging.getLogger("comovi_core.training.train")


def train(
    cfg: TrainConfig,
    model,
    clips,
    out: Path,
    *,
    body,
    vae=None,
    text_encoder=None,
    accelerator=None,
    resume: Path | None = None,
    tensorboard: bool = False,
) -> dict:
    """The training loop, from scratch or from the state folder ``resume``, under the --sharding strategy
    (``strategies``). ``clips``: a list of ``Clip`` (encoded with ``vae`` and ``text_encoder`` as they are used) or a
    prepared cache (``cache.CacheData``; ``vae`` is then only for the validation sample, ``text_encoder`` unused).
    ``body``: the body model of the stage-2 SMPL loss.
    Returns a summary (first/last loss of this invocation, steps, seconds, processes, resumed_from)."""
    from .data import ClipData
    from .data_order import EpochOrder, sample_index
    from .state import MetricsLog, refuse_overwrite, remove_debris

    out = Path(out)
    accelerator = accelerator or make_accelerator(cfg, out, tensorboard)
    device, rank, processes = accelerator.device, accelerator.process_index, accelerator.num_processes
    if resume is None:
        refuse_overwrite(out)
    strategy = make_strategy(cfg, accelerator)
    done = strategy.prepare(model, resume)
    out.mkdir(parents=True, exist_ok=True)
    if accelerator.is_main_process:
        remove_debris(out)
    if isinstance(clips, list):
        vae.to(device)
        clips = ClipData(clips, vae, text_encoder, cfg.text_dropout > 0)
    elif vae is not None:  # a cache run's VAE (--vae): only to decode the validation sample
        vae.to(device)
    validation = Validation(cfg, clips, out, vae)
    order = EpochOrder(cfg.seed, clips.sizes)
    metrics = MetricsLog(out, accelerator, done, tensorboard, dataclasses.asdict(cfg))
    has_smpl_head = strategy.unwrapped_model().smpl_head is not None
    stage_losses = LOSS_NAMES[:1] if cfg.stage == 1 else LOSS_NAMES[:2] + (("smpl",) if has_smpl_head else ())
    history, start = [], time.perf_counter()
    for step in range(done + 1, cfg.steps + 1):
        tick, total, parts, tokens = time.perf_counter(), 0.0, dict.fromkeys(LOSS_NAMES, 0.0), 0
        for k in range(cfg.grad_accum):
            generator = micro_batch_generator(cfg.seed, step, rank * cfg.grad_accum + k)
            sample = clips.read(*order(sample_index(step, rank, processes, cfg.grad_accum, k)), device)
            context = clips.empty_context(device) if drop_text(cfg, generator) else sample.context
            tokens += 2 * sample.x0_rgb[0, 0].numel() // 4  # both branches, patches of 1x2x2 latents
            with strategy.micro_batch(last=k == cfg.grad_accum - 1):  # gradients averaged once per step
                losses = latent_training_step(
                    strategy.model, body, sample.x0_rgb, sample.x0_motion, sample.motion, context, cfg, generator
                )
                loss = sum(losses.values()) / cfg.grad_accum
                strategy.backward(loss)
            total += loss.detach().item()
            for name, value in losses.items():
                parts[name] += value.detach().item() / cfg.grad_accum
        reduced = accelerator.reduce(torch.tensor([total, *parts.values()], device=device), "mean")
        total, parts = float(reduced[0]), dict(zip(LOSS_NAMES, reduced[1:].tolist()))
        tokens = int(accelerator.reduce(torch.tensor([tokens], device=device), "sum"))  # all processes
        if not math.isfinite(total):
            raise CoMoViError(f"the loss became {total} at step {step}; lower --lr")
        grad_norm, lr = strategy.step()
        history.append(total)
        seconds = time.perf_counter() - tick
        row = {
            "loss": total,
            **{f"loss_{n}": parts[n] for n in stage_losses},
            "lr": lr,
            "grad_norm": grad_norm,
            "samples_per_s": cfg.grad_accum * processes / seconds,
            "tokens": tokens,
            "tokens_per_s": tokens / seconds,
        }
        if torch.cuda.is_available():
            row["peak_memory_gb"] = torch.cuda.max_memory_allocated() / 2**30
        if validation.due(step) and (strategy.splits_parameters or accelerator.is_main_process):
            row.update(validation.run(strategy.unwrapped_model(), body, step, device, accelerator.is_main_process))
        metrics.log(step, row)
        if (step % cfg.log_every == 0 or step == done + 1) and accelerator.is_main_process:
            log.info("step %d/%d  %s", step, cfg.steps, "  ".join(f"{k} {v:.4g}" for k, v in row.items()))
        if step % cfg.save_every == 0 or step == cfg.steps:
            strategy.save(out, step=step, loss=total)
    metrics.close()
    clips.close()
    summary = {
        "steps": cfg.steps,
        "first_loss": history[0] if history else None,
        "last_loss": history[-1] if history else None,
        "seconds": time.perf_counter() - start,
        "processes": processes,
        "resumed_from": done,
    }
    if accelerator.is_main_process and history:
        with atomic_path(out / "summary.json") as tmp:
            tmp.write_text(json.dumps(summary, indent=1))
    accelerator.wait_for_everyone()
    return summary


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m comovi_core.train", description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="wan2.2-ti2v-5b", help="model preset; tiny = random tiny weights in memory")
    p.add_argument(
        "--init",
        nargs="*",
        default=[],
        help="checkpoints to start from (base Wan2.2, then CoMoVi/ours), later ones win",
    )
    p.add_argument("--data", type=Path, help="dataset folder (see comovi_core.training.data)")
    p.add_argument("--synthetic", type=int, default=0, help="use this many synthetic mannequin clips instead of --data")
    p.add_argument(
        "--cache",
        type=Path,
        nargs="+",
        help="prepared cache folder(s) (python -m comovi_core.prepare) instead of --data: streamed with bounded "
        "memory, no VAE or text encoder loaded; --frames/--height/--width default to its size. Several caches "
        "(one per size: frames x height x width) train together, each clip at its own size (buckets)",
    )
    p.add_argument("--out", type=Path, required=True, help="run folder: checkpoints, states, metrics.jsonl, summary")
    p.add_argument(
        "--resume",
        default="latest",
        help="latest (default): continue from the newest complete state in --out, if any; none: start "
        "fresh; or a state_NNNNNN folder / step_NNNNNN.safetensors file",
    )
    p.add_argument("--tensorboard", action="store_true", help="also log metrics to TensorBoard (--out/tensorboard)")
    p.add_argument(
        "--body-model",
        type=Path,
        help="SMPL model file or folder for the stage-2 SMPL loss; default: the stand-in mannequin (not SMPL)",
    )
    p.add_argument(
        "--vae",
        type=Path,
        help="Wan2.2 VAE (single file or folder); default: the vae/ folder of --init (a --cache run loads it only "
        "to decode validation samples)",
    )
    for f in dataclasses.fields(TrainConfig):
        if f.name == "preset":
            continue
        text = f"{f.metadata['help']} (default {f.default})"
        kind = {"bool": lambda v: v.lower() in ("1", "true", "yes"), "int": int, "float": float, "str": str}[
            str(f.type)
        ]
        p.add_argument(
            "--" + f.name.replace("_", "-"), type=kind, default=None, help=text, choices=f.metadata.get("choices")
        )
    return p.parse_args(argv)


def load_training_model(cfg: TrainConfig, init: list):
    """The model for ``cfg`` in the compute dtype (``train`` then makes the trained parameters fp32 masters). The
    tiny preset builds random weights in memory (then ``init`` on top). Sharded (--sharding fsdp2*, zero3*), only
    process 0 reads weights; the others build the model on the meta device (``train`` hands them their shards)."""
    from ..model.loading import build_model, load_model, open_checkpoint, resolve_config

    if splits_parameters(cfg) and not _is_main_process():
        config = resolve_config([open_checkpoint(p) for p in init], get_config(cfg.preset)) if init else None
        return build_model(config or get_config(cfg.preset), "meta").to(compute_dtype(cfg))

    if cfg.preset == "tiny":
        from ..inference.tiny import tiny_transformer

        if not init:
            return tiny_transformer(cfg.seed).to(compute_dtype(cfg))
        return load_model(get_config("tiny"), init, dtype=compute_dtype(cfg))[0].to(compute_dtype(cfg))
    if not init:
        raise CoMoViError("--init is needed: the base Wan2.2-TI2V-5B weights (diffusers folder or single file)")
    return load_model(get_config(cfg.preset), init, dtype=compute_dtype(cfg), device=_device())[0]


def _validation_vae(cfg: TrainConfig, vae_path: Path | None):
    """A --cache run's VAE, loaded only to decode validation samples: tiny's, or --vae's; None otherwise."""
    if not cfg.validate_every:
        return None
    if cfg.preset != "tiny" and vae_path is None:
        log.info("validation samples are saved as latents only: give --vae to also get their videos")
        return None
    from ..codecs.loading import load_vae

    return load_vae(vae_path, preset=cfg.preset, seed=cfg.seed, device=None if cfg.preset == "tiny" else _device())


def _process_state():
    """accelerate's view of this process (its GPU and rank under accelerate/torchrun)."""
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def _is_main_process() -> bool:
    return _process_state().is_main_process


def _device() -> torch.device:
    return _process_state().device


def load_training_components(cfg: TrainConfig, init: list, vae_path: Path | None = None):
    """(model, vae, text encoder) for ``cfg``: ``load_training_model`` + ``codecs.loading.load_codecs`` (the VAE and
    umT5 from the base folder, the first of ``init``) on this process's device."""
    from ..codecs import loading

    tiny = cfg.preset == "tiny"  # tiny's codecs are made on the CPU
    base = Path(init[0]) if init and not tiny else None
    model = load_training_model(cfg, init)
    device = None if tiny else _device()
    return (model, *loading.load_codecs(cfg.preset, base, vae_path=vae_path, seed=cfg.seed, device=device))


def make_config(args: argparse.Namespace) -> TrainConfig:
    """TrainConfig from the flags (tiny has its own defaults), checked before anything loads."""
    tiny = args.preset == "tiny"
    defaults = (
        dict(
            frames=9,
            height=64,
            width=64,
            grad_accum=1,
            warmup=5,
            lr=1e-3,
            gradient_checkpointing=False,
            precision="fp32",
        )
        if tiny
        else {}
    )
    values = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(TrainConfig)
        if f.name != "preset" and getattr(args, f.name) is not None
    }
    if sum((args.data is not None, args.synthetic != 0, args.cache is not None)) != 1:
        raise CoMoViError(
            "give either --data FOLDER, --cache FOLDER [FOLDER ...] (python -m comovi_core.prepare) or --synthetic N"
        )
    if args.cache is not None:
        from .cache import cache_size, check_caches, read_manifests

        manifests = read_manifests(args.cache, values)
        defaults.update(zip(("frames", "height", "width"), cache_size(manifests[0])))
    launcher = launcher_sharding(os.environ)
    if launcher and values.setdefault("sharding", launcher) != launcher:
        raise CoMoViError(
            f"--sharding {values['sharding']} and the accelerate config's {launcher} disagree: drop --sharding (the "
            "config decides) or launch with a MULTI_GPU config (configs/accelerate/one_node_8_gpus.yaml)"
        )
    cfg = TrainConfig(preset=args.preset, **{**defaults, **values})
    if cfg.stage not in (1, 2):
        raise CoMoViError(f"--stage must be 1 or 2, got {cfg.stage}")
    if args.cache is not None:
        check_caches(manifests, args.cache, cfg.preset, cfg.frames, cfg.height, cfg.width)
    check_video_size(cfg.height, cfg.width, cfg.frames)
    _check_numbers(cfg)
    if args.synthetic < 0:
        raise CoMoViError(f"--synthetic is a number of clips, got {args.synthetic}; e.g. --synthetic 4")
    if is_zero(cfg):
        require_deepspeed(cfg.sharding)
    if cfg.optimizer == "adamw8bit":
        if is_sharded(cfg) or is_zero(cfg):
            raise CoMoViError(
                f"--optimizer adamw8bit (bitsandbytes) does not take sharded parameters: use it with --sharding ddp, "
                f"or --optimizer adamw with --sharding {cfg.sharding} (its moments are split over the processes)"
            )
        import importlib.util

        if importlib.util.find_spec("bitsandbytes") is None:
            raise CoMoViError(
                "--optimizer adamw8bit needs bitsandbytes: pip install bitsandbytes (or the adam8bit extra)"
            )
    if cfg.lora and (is_sharded(cfg) or is_zero(cfg)):
        raise CoMoViError(
            f"--lora trains adapters of a few hundred MB: run it with --sharding ddp (the default), not {cfg.sharding}"
        )
    if cfg.lora:
        from ..model.lora import parse_targets, require_peft

        parse_targets(cfg.lora_targets, cfg.stage)
        require_peft()
    elif cfg.lora_targets or cfg.lora_alpha:
        raise CoMoViError("--lora-targets/--lora-alpha need --lora RANK (e.g. --lora 64)")
    if args.data is not None and not args.data.is_dir():
        raise CoMoViError(f"--data {args.data} is not a folder: give the dataset folder (one sub-folder per clip)")
    return cfg


def _check_numbers(cfg: TrainConfig) -> None:
    """Refuse counts and rates that cannot train (negative, zero where meaningless, NaN) before anything loads."""
    for name in ("steps", "grad_accum", "save_every", "log_every", "validate_steps"):
        if not getattr(cfg, name) >= 1:
            raise CoMoViError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(cfg, name)}")
    at_least_zero = {
        "keep_states": "keep all",
        "validate_every": "no validation",
        "warmup": "no warm-up",
        "weight_decay": "no decay",
        "lora": "no LoRA; else a rank such as 64",
        "lora_alpha": "alpha = rank",
    }
    for name, zero in at_least_zero.items():
        if not getattr(cfg, name) >= 0:
            raise CoMoViError(f"--{name.replace('_', '-')} must be 0 ({zero}) or more, got {getattr(cfg, name)}")
    positive = {
        "lr": "e.g. 2e-5",
        "clip": "e.g. 0.5; a huge value such as 1e9 does not clip",
        "adam_eps": "e.g. 1e-10",
        "shift": "e.g. 5",
    }
    for name, hint in positive.items():
        if not 0 < getattr(cfg, name) < float("inf"):
            raise CoMoViError(f"--{name.replace('_', '-')} must be a number above 0 ({hint}), got {getattr(cfg, name)}")
    if not 0 <= cfg.text_dropout < 1:
        raise CoMoViError(f"--text-dropout is a probability in [0, 1), got {cfg.text_dropout}")


def _check_init_files(init: list) -> None:
    """Open the header of every --init weight file (no tensor data): a missing, cut or foreign file is refused
    before the data and the model load."""
    from ..files.weights import checked_safe_open
    from ..model.loading import safetensors_files

    for path in init:
        for file in safetensors_files(path):
            checked_safe_open(file)


def run(args: argparse.Namespace) -> Path:
    from .data import load_clips, synthetic_clips
    from .state import refuse_overwrite, resolve_resume

    cfg = make_config(args)
    for key in LAUNCHER_KEYS:  # --sharding carries it now: the loop drives FSDP2/DeepSpeed, not accelerate's plugins
        os.environ.pop(key, None)
    check_writable_folder(args.out, "--out run folder")
    _check_init_files(args.init)
    resume = resolve_resume(args.resume, args.out)
    if resume is None:
        refuse_overwrite(args.out)
    body = load_body_model(args.body_model)
    if cfg.stage == 2 and body.is_standin and cfg.preset != "tiny":
        log.warning("stage 2 without --body-model: the SMPL loss uses the stand-in mannequin, not SMPL")
    if args.cache is not None:
        from .cache import CacheData

        data, model, text = CacheData(args.cache), load_training_model(cfg, args.init), None
        vae = _validation_vae(cfg, args.vae)
    else:
        data = (
            synthetic_clips(body, args.synthetic, cfg.frames, cfg.height, cfg.width, cfg.seed)
            if args.synthetic
            else load_clips(args.data, cfg.frames, cfg.height, cfg.width)
        )
        model, vae, text = load_training_components(cfg, args.init, args.vae)
    summary = train(
        cfg, model, data, args.out, body=body, vae=vae, text_encoder=text, resume=resume, tensorboard=args.tensorboard
    )
    from accelerate import PartialState

    if PartialState().is_main_process and summary["first_loss"] is None:
        log.info("nothing to do: %s is already at step %d of --steps %d", args.out, summary["resumed_from"], cfg.steps)
    elif PartialState().is_main_process:
        log.info(
            "done: loss %.4f -> %.4f in %.1f s (%d processes)",
            summary["first_loss"],
            summary["last_loss"],
            summary["seconds"],
            summary["processes"],
        )
    return args.out


def main(argv=None) -> int:
    return run_cli(parse_args, run, log, argv)


if __name__ == "__main__":
    sys.exit(main())
