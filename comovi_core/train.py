"""Fine-tune CoMoVi (SPEC §6): stage 1 trains the motion branch, stage 2 the coupling (+ 3D head).

Tiny CPU example (synthetic clips of the stand-in mannequin, random tiny weights):

    python -m comovi_core.train --preset tiny --synthetic 4 --stage 1 --steps 20 --out runs/tiny

Real run (the base Wan2.2 and optionally a CoMoVi checkpoint to start from; SMPL for the stage-2 loss):

    python -m comovi_core.train --init models/Wan2.2-TI2V-5B-Diffusers --data clips/ --stage 1 --steps 2000 --out runs/s1
    python -m comovi_core.train --init models/Wan2.2-TI2V-5B-Diffusers runs/s1/step_002000.safetensors \\
        --data clips/ --stage 2 --steps 4000 --body-model models/smpl --out runs/s2

Several GPUs or machines: the loop runs through accelerate (data parallel; each process draws its own
micro-batches and gradients are averaged), so launch the same command with ``accelerate launch -m
comovi_core.train ...`` or ``torchrun --nproc_per_node N -m comovi_core.train ...``. Micro-batch i of
step t draws its clip, noise and timestep from seed (--seed, t, i), where i counts over all processes:
N processes with --grad-accum A give the same update as one process with --grad-accum N*A.

Flow matching as Wan trains: x_t = (1 - s) x0 + s eps, the model predicts eps - x0 (the paper's t is
1 - s, with the opposite sign of the velocity); s is drawn logit-normally (SD3); latent frame 0 is the
clean start frame at timestep 0 and is left out of the loss. Stage 1: only the motion branch learns,
loss = L_motion (the release's stage-1 entry point does not exist; this one runs). Stage 2: the
zero-linears, the motion branch and the 3D head learn, the RGB branch is frozen, loss = L_motion +
L_video + L_smpl (6D pose MSE + SMPL vertex MSE + root-relative joint MSE). AdamW, linear warm-up,
gradient accumulation, clipping; checkpoints are safetensors + JSON (loadable by ``load_model``).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .atomic import atomic_path
from .body.rotations import axis_angle_to_rot6d, rot6d_to_axis_angle
from .body.smpl import load_body_model
from .cli import run_cli
from .conditioning import check_video_size
from .errors import CoMoViError
from .model.config import get_config
from .model.saving import save_checkpoint
from .sampling import NUM_TRAIN_TIMESTEPS, first_frame_mask, token_timesteps
from .vae import encode_frames

log = logging.getLogger("comovi_core.train")


@dataclass(frozen=True)
class TrainConfig:
    preset: str = field(default="wan2.2-ti2v-5b", metadata={"help": "model preset (tiny: random weights built in memory)"})
    stage: int = field(default=1, metadata={"help": "1: motion branch; 2: zero-linears + motion branch + 3D head"})
    steps: int = field(default=2000, metadata={"help": "optimizer steps"})
    lr: float = field(default=2e-5, metadata={"help": "AdamW learning rate"})
    warmup: int = field(default=100, metadata={"help": "linear warm-up steps"})
    grad_accum: int = field(default=4, metadata={"help": "micro-batches per optimizer step"})
    clip: float = field(default=0.5, metadata={"help": "gradient-norm clip"})
    weight_decay: float = field(default=3e-2, metadata={"help": "AdamW weight decay"})
    frames: int = field(default=81, metadata={"help": "frames per clip (4k+1)"})
    height: int = field(default=704, metadata={"help": "training height (multiple of 32)"})
    width: int = field(default=1280, metadata={"help": "training width (multiple of 32)"})
    seed: int = field(default=0, metadata={"help": "data order, noise and timesteps"})
    save_every: int = field(default=500, metadata={"help": "checkpoint period in optimizer steps (and at the end)"})
    log_every: int = field(default=10, metadata={"help": "log period in optimizer steps"})
    gradient_checkpointing: bool = field(default=True, metadata={"help": "recompute activations in the backward pass"})




def trainable_parameters(model, stage: int) -> list[torch.nn.Parameter]:
    """Freeze everything, then unfreeze what the stage trains; returns those parameters."""
    for p in model.parameters():
        p.requires_grad_(False)
    modules = [model.motion]
    if stage == 2:
        modules += [model.zero_linears] + ([model.smpl_head] if model.smpl_head is not None else [])
    params = [p for m in modules for p in m.parameters()]
    for p in params:
        p.requires_grad_(True)
    return params


def flow_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MSE over latent frames 1.. (frame 0 is the given start frame)."""
    return F.mse_loss(pred[:, :, 1:].float(), target[:, :, 1:].float())


def smpl_loss(body, pred_6d: torch.Tensor, motion) -> torch.Tensor:
    """6D MSE + vertex MSE + root-relative joint MSE against the clip's SMPL of frames 1..F-1."""
    frames = pred_6d.shape[1]
    poses = torch.cat([torch.from_numpy(motion.global_orient), torch.from_numpy(motion.body_pose)], 1)[1 : frames + 1]
    target_6d = axis_angle_to_rot6d(poses.reshape(frames, 24, 3)).reshape(frames, 144).to(pred_6d)
    loss = F.mse_loss(pred_6d[0], target_6d)
    pred_aa = rot6d_to_axis_angle(pred_6d[0].reshape(frames, 24, 6).float()).reshape(frames, 72)
    betas = torch.from_numpy(motion.betas)
    pred = body(pred_aa[:, :3], pred_aa[:, 3:], betas)
    with torch.no_grad():
        ref = body(poses[:, :3], poses[:, 3:], betas)
    loss = loss + F.mse_loss(pred.vertices, ref.vertices)
    rel = lambda j: j - j[:, :1]  # noqa: E731
    return loss + F.mse_loss(rel(pred.joints), rel(ref.joints))


def training_step(model, vae, body, clip, context, cfg: TrainConfig, generator) -> dict[str, torch.Tensor]:
    """One micro-batch: losses (differentiable) for ``clip``. ``model`` may be wrapped (DDP): attributes are read
    from the wrapped module, the forward goes through the wrapper."""
    core = getattr(model, "module", model)
    device, dtype = next(core.parameters()).device, next(core.parameters()).dtype
    with torch.no_grad():
        as_video = lambda f: (f * 2 - 1).permute(3, 0, 1, 2)[None].to(device)  # noqa: E731 (F,H,W,3)->(1,3,F,H,W)
        x0_rgb, x0_motion = encode_frames(vae, as_video(clip.rgb)), encode_frames(vae, as_video(clip.motion_map))
    from diffusers.training_utils import compute_density_for_timestep_sampling  # on use: diffusers costs seconds

    sigma = compute_density_for_timestep_sampling("logit_normal", 1, logit_mean=0.0, logit_std=1.0, generator=generator).to(device)
    mask = first_frame_mask(x0_rgb.shape, device)
    noise_rgb = torch.randn(x0_rgb.shape, generator=generator).to(device)
    noise_motion = torch.randn(x0_motion.shape, generator=generator).to(device)
    s = sigma.view(-1, 1, 1, 1, 1)
    noisy = lambda x0, eps: (1 - mask) * x0 + mask * ((1 - s) * x0 + s * eps)  # noqa: E731  frame 0 stays clean
    timestep = token_timesteps(mask, sigma[0] * NUM_TRAIN_TIMESTEPS, 1, core.config.patch_size)
    start_pose = None
    if core.smpl_head is not None and clip.motion is not None and cfg.stage == 2:
        first = torch.cat([torch.from_numpy(clip.motion.global_orient[:1]), torch.from_numpy(clip.motion.body_pose[:1])], 1)
        start_pose = axis_angle_to_rot6d(first.reshape(24, 3)).reshape(1, 144).to(device, dtype)
    out = model(noisy(x0_rgb, noise_rgb).to(dtype), noisy(x0_motion, noise_motion).to(dtype), timestep, context.to(dtype), start_pose)
    losses = {"motion": flow_loss(out.motion, noise_motion - x0_motion)}
    if cfg.stage == 2:
        losses["video"] = flow_loss(out.rgb, noise_rgb - x0_rgb)
        if out.smpl_6d is not None:
            losses["smpl"] = smpl_loss(body, out.smpl_6d.float(), clip.motion)
    return losses


def micro_batch_generator(seed: int, step: int, index: int) -> torch.Generator:
    """The random stream of micro-batch ``index`` (counted over all processes) of optimizer step ``step``."""
    return torch.Generator().manual_seed(int(np.random.SeedSequence([seed, step, index]).generate_state(1)[0]))


def train(cfg: TrainConfig, model, vae, text_encoder, clips, out: Path, body, accelerator=None) -> dict:
    """The training loop (data parallel through accelerate). Returns a summary (first/last loss, steps, seconds)."""
    from accelerate import Accelerator, DistributedDataParallelKwargs

    if accelerator is None:  # stage 2: the 3D head sees no gradient on clips without SMPL
        accelerator = Accelerator(cpu=not torch.cuda.is_available(),  # without GPUs, processes talk over gloo
                                  kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=cfg.stage == 2)])
    out.mkdir(parents=True, exist_ok=True)
    params = trainable_parameters(model, cfg.stage)
    model.train()
    model.enable_gradient_checkpointing(cfg.gradient_checkpointing)
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / max(1, cfg.warmup)))
    model, optimizer = accelerator.prepare(model, optimizer)
    vae.to(accelerator.device)
    with torch.no_grad():
        contexts = {c.caption: text_encoder([c.caption]) for c in clips}
    history, start = [], time.perf_counter()
    for step in range(1, cfg.steps + 1):
        total = 0.0
        for k in range(cfg.grad_accum):
            generator = micro_batch_generator(cfg.seed, step, accelerator.process_index * cfg.grad_accum + k)
            clip = clips[int(torch.randint(len(clips), (1,), generator=generator))]
            last = k == cfg.grad_accum - 1
            with contextlib.nullcontext() if last else accelerator.no_sync(model):  # all-reduce once per step
                losses = training_step(model, vae, body, clip, contexts[clip.caption], cfg, generator)
                loss = sum(losses.values()) / cfg.grad_accum
                accelerator.backward(loss)
            total += loss.detach().item()
        total = float(accelerator.reduce(torch.tensor(total, device=accelerator.device), "mean"))
        if not math.isfinite(total):
            raise CoMoViError(f"the loss became {total} at step {step}; lower --lr")
        accelerator.clip_grad_norm_(params, cfg.clip)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        history.append(total)
        if (step % cfg.log_every == 0 or step == 1) and accelerator.is_main_process:
            log.info("step %d/%d  loss %.4f  lr %.2e", step, cfg.steps, total, schedule.get_last_lr()[0])
        if step % cfg.save_every == 0 or step == cfg.steps:
            accelerator.wait_for_everyone()
            if accelerator.is_main_process:
                meta = {"step": step, "train": dataclasses.asdict(cfg), "loss": total, "processes": accelerator.num_processes}
                save_checkpoint(accelerator.unwrap_model(model), out / f"step_{step:06d}.safetensors", "comovi", meta)
    summary = {"steps": cfg.steps, "first_loss": history[0], "last_loss": history[-1], "seconds": time.perf_counter() - start,
               "processes": accelerator.num_processes}
    if accelerator.is_main_process:
        with atomic_path(out / "summary.json") as tmp:
            tmp.write_text(json.dumps(summary, indent=1))
    accelerator.wait_for_everyone()
    return summary


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m comovi_core.train", description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="wan2.2-ti2v-5b", help="model preset; tiny = random tiny weights in memory")
    p.add_argument("--init", nargs="*", default=[], help="checkpoints to start from (base Wan2.2, then CoMoVi/ours), later ones win")
    p.add_argument("--data", type=Path, help="dataset folder (see comovi_core.train_data)")
    p.add_argument("--synthetic", type=int, default=0, help="use this many synthetic mannequin clips instead of --data")
    p.add_argument("--out", type=Path, required=True, help="output folder for checkpoints and summary.json")
    p.add_argument("--body-model", type=Path, help="SMPL model file or folder for the stage-2 SMPL loss; default: the stand-in mannequin (not SMPL)")
    p.add_argument("--vae", type=Path, help="Wan2.2 VAE (single file or folder); default: the vae/ folder of the first --init")
    for f in dataclasses.fields(TrainConfig):
        if f.name == "preset":
            continue
        text = f"{f.metadata['help']} (default {f.default})"
        kind = {"bool": lambda v: v.lower() in ("1", "true", "yes"), "int": int, "float": float}[str(f.type)]
        p.add_argument("--" + f.name.replace("_", "-"), type=kind, default=None, help=text)
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> Path:
    tiny = args.preset == "tiny"
    defaults = dict(frames=9, height=64, width=64, grad_accum=1, warmup=5, lr=1e-3, gradient_checkpointing=False) if tiny else {}
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if f.name != "preset" and getattr(args, f.name) is not None}
    cfg = TrainConfig(preset=args.preset, **{**defaults, **values})
    if cfg.stage not in (1, 2):
        raise CoMoViError(f"--stage must be 1 or 2, got {cfg.stage}")
    if (args.data is None) == (args.synthetic == 0):
        raise CoMoViError("give either --data FOLDER or --synthetic N")
    check_video_size(cfg.height, cfg.width, cfg.frames)
    for name in ("steps", "grad_accum", "save_every", "log_every"):
        if getattr(cfg, name) < 1:
            raise CoMoViError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(cfg, name)}")
    if args.data is not None and not args.data.is_dir():
        raise CoMoViError(f"--data {args.data} is not a folder: give the dataset folder (one sub-folder per clip)")
    body = load_body_model(args.body_model)
    if cfg.stage == 2 and body.is_standin and not tiny:
        log.warning("stage 2 without --body-model: the SMPL loss uses the stand-in mannequin, not SMPL")
    from .train_data import load_clips, synthetic_clips

    clips = synthetic_clips(body, args.synthetic, cfg.frames, cfg.height, cfg.width, cfg.seed) if args.synthetic else load_clips(args.data, cfg.frames)
    if tiny:
        from .tiny import tiny_components

        parts = tiny_components(cfg.seed)
        model, vae, text = parts["transformer"], parts["vae"], parts["text_encoder"]
        if args.init:
            from .model.loading import load_model

            model, _ = load_model(get_config("tiny"), args.init, dtype=torch.float32)
    else:
        from accelerate import PartialState

        from .model.loading import load_model
        from .text import UMT5TextEncoder
        from .vae_loading import load_wan22_vae

        if not args.init:
            raise CoMoViError("--init is needed: the base Wan2.2-TI2V-5B weights (diffusers folder or single file)")
        device = PartialState(cpu=not torch.cuda.is_available()).device  # this process's GPU under accelerate/torchrun
        model, _ = load_model(get_config(cfg.preset), args.init, dtype=torch.bfloat16, device=device)
        base = Path(args.init[0])
        vae = load_wan22_vae(args.vae or base, torch.float32).to(device)
        text = UMT5TextEncoder(base, device, torch.bfloat16, get_config(cfg.preset).text_len)
    summary = train(cfg, model, vae, text, clips, args.out, body)
    from accelerate import PartialState

    if PartialState().is_main_process:
        log.info("done: loss %.4f -> %.4f in %.1f s (%d processes)", summary["first_loss"], summary["last_loss"], summary["seconds"],
                 summary["processes"])
    return args.out


def main(argv=None) -> int:
    return run_cli(parse_args, run, log, argv)


if __name__ == "__main__":
    sys.exit(main())
