"""One training micro-batch (docs/training.md): the training config, what each stage trains, noise levels and losses.

The loop and the command are ``comovi_core.training.train``; its docstring gives the recipe and the precision scheme.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ..body.rotations import axis_angle_to_rot6d, rot6d_to_axis_angle
from ..codecs.vae import encode_frames
from ..inference.sampling import NUM_TRAIN_TIMESTEPS, first_frame_mask, token_timesteps
from .distributed import SHARDINGS, compute_dtype

PRECISIONS = ("bf16", "fp32")
OPTIMIZERS = ("adamw", "adamw8bit")
TIMESTEP_SAMPLINGS = ("uniform", "logit_normal")
LOSS_NAMES = ("motion", "video", "smpl")


@dataclass(frozen=True)
class TrainConfig:
    preset: str = field(default="wan2.2-ti2v-5b", metadata={"help": "model preset (tiny: random weights in memory)"})
    stage: int = field(default=1, metadata={"help": "1: motion branch; 2: zero-linears + motion branch + 3D head"})
    steps: int = field(default=2000, metadata={"help": "optimizer steps"})
    lr: float = field(default=2e-5, metadata={"help": "AdamW learning rate"})
    warmup: int = field(default=100, metadata={"help": "linear warm-up steps"})
    grad_accum: int = field(default=4, metadata={"help": "micro-batches per optimizer step"})
    clip: float = field(default=0.5, metadata={"help": "gradient-norm clip"})
    weight_decay: float = field(default=3e-2, metadata={"help": "AdamW weight decay"})
    adam_eps: float = field(default=1e-10, metadata={"help": "AdamW epsilon (the release's 1e-10)"})
    frames: int = field(default=81, metadata={"help": "frames per clip (4k+1)"})
    height: int = field(default=704, metadata={"help": "training height (multiple of 32)"})
    width: int = field(default=1280, metadata={"help": "training width (multiple of 32)"})
    seed: int = field(default=0, metadata={"help": "data order, noise and timesteps"})
    save_every: int = field(default=500, metadata={"help": "checkpoint period in optimizer steps (and at the end)"})
    log_every: int = field(default=10, metadata={"help": "log period in optimizer steps"})
    keep_states: int = field(
        default=2,
        metadata={
            "help": "resumable state_N folders kept, newest first (~12 bytes per trained parameter each); 0 keeps all"
        },
    )
    gradient_checkpointing: bool = field(default=True, metadata={"help": "recompute activations in the backward pass"})
    precision: str = field(
        default="bf16", metadata={"help": "bf16: fp32 masters + bf16 autocast; fp32: all fp32", "choices": PRECISIONS}
    )
    timestep_sampling: str = field(
        default="uniform",
        metadata={
            "help": "uniform over the shifted schedule (release) or logit_normal (SD3)",
            "choices": TIMESTEP_SAMPLINGS,
        },
    )
    shift: float = field(default=5.0, metadata={"help": "flow shift of the schedule that uniform sampling draws from"})
    text_dropout: float = field(default=0.0, metadata={"help": "probability of training with the empty prompt (CFG)"})
    lora: int = field(default=0, metadata={"help": "LoRA rank (peft); 0 trains the stage's parts fully"})
    lora_alpha: float = field(default=0.0, metadata={"help": "LoRA alpha (scale alpha/rank); 0 means = rank"})
    lora_targets: str = field(
        default="",
        metadata={
            "help": "LoRA groups, comma-separated: motion_attn, motion_ffn, rgb_attn, rgb_ffn, coupling, smpl_head; "
            "empty = stage 1: motion_attn,motion_ffn; stage 2: those + coupling,smpl_head"
        },
    )
    optimizer: str = field(
        default="adamw",
        metadata={
            "help": "adamw (torch, fp32 moments: 8 bytes per trained parameter) or adamw8bit (bitsandbytes, "
            "block-wise 8-bit moments: ~2 bytes; --sharding ddp only)",
            "choices": OPTIMIZERS,
        },
    )
    validate_every: int = field(
        default=0,
        metadata={"help": "validation period in optimizer steps (losses at fixed draws + a generated sample); 0: off"},
    )
    validate_steps: int = field(default=20, metadata={"help": "sampler steps of the validation sample"})
    sharding: str = field(
        default="ddp",
        metadata={
            "help": "ddp: every process holds the whole model; fsdp2: parameters, gradients and AdamW state sharded "
            "over the processes (torch FSDP2); fsdp2_offload: sharded and kept in CPU memory; zero2 / zero3: DeepSpeed "
            "ZeRO stage 2 (optimizer state and gradients split) / 3 (parameters too), _offload: in CPU memory "
            "(needs deepspeed)",
            "choices": SHARDINGS,
        },
    )


def make_optimizer(params: list, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW over ``params`` with the run's lr, weight decay and eps (betas 0.9, 0.999 as the release); 8-bit moments
    with --optimizer adamw8bit (bitsandbytes; parameters under 4096 elements keep fp32 moments there)."""
    options = {"lr": cfg.lr, "weight_decay": cfg.weight_decay, "eps": cfg.adam_eps}
    if cfg.optimizer == "adamw8bit":
        import bitsandbytes

        return bitsandbytes.optim.AdamW8bit(params, **options)
    return torch.optim.AdamW(params, **options)


def lora_alpha(cfg: TrainConfig) -> float:
    return cfg.lora_alpha or float(cfg.lora)


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


def prepare_for_training(model, cfg: TrainConfig) -> list[tuple[str, torch.nn.Parameter]]:
    """Freeze and cast for the stage: trained parameters become fp32 master weights (under DeepSpeed: its
    optimizer's), frozen ones the compute dtype (bf16 under --precision bf16); with --lora only the injected
    adapters train (``comovi_core.model.lora``).
    Returns the trained (name, parameter) pairs in a fixed order."""
    if cfg.lora:
        from ..model.lora import add_lora, parse_targets

        trained = {
            id(p)
            for _, p in add_lora(model, cfg.lora, lora_alpha(cfg), parse_targets(cfg.lora_targets, cfg.stage), cfg.seed)
        }
    else:
        trained = {id(p) for p in trainable_parameters(model, cfg.stage)}
    # DeepSpeed (--sharding zero*) keeps the fp32 masters in its optimizer and the model in the compute dtype
    master = compute_dtype(cfg) if cfg.sharding.startswith("zero") else torch.float32
    for p in model.parameters():
        p.data = p.data.to(master) if id(p) in trained else p.data.to(compute_dtype(cfg))
    model.train()
    if cfg.gradient_checkpointing:  # diffusers' mechanism (ModelMixin)
        model.enable_gradient_checkpointing()
    else:
        model.disable_gradient_checkpointing()
    return [(n, p) for n, p in model.named_parameters() if id(p) in trained]


def flow_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MSE over latent frames 1.. (frame 0 is the given start frame)."""
    return F.mse_loss(pred[:, :, 1:].float(), target[:, :, 1:].float())


def smpl_loss(body, pred_6d: torch.Tensor, motion) -> torch.Tensor:
    """6D MSE + vertex MSE + root-relative joint MSE against the clip's SMPL of frames 1..F-1."""
    frames = pred_6d.shape[1]
    poses = torch.from_numpy(motion.full_pose[1 : frames + 1])
    target_6d = axis_angle_to_rot6d(poses.reshape(frames, 24, 3)).reshape(frames, 144).to(pred_6d)
    loss = F.mse_loss(pred_6d[0], target_6d)
    pred_aa = rot6d_to_axis_angle(pred_6d[0].reshape(frames, 24, 6).float()).reshape(frames, 72)
    betas = torch.from_numpy(motion.betas)
    pred = body(pred_aa[:, :3], pred_aa[:, 3:], betas)
    with torch.no_grad():
        ref = body(poses[:, :3], poses[:, 3:], betas)
    loss = loss + F.mse_loss(pred.vertices, ref.vertices)

    def rel(j):
        return j - j[:, :1]

    return loss + F.mse_loss(rel(pred.joints), rel(ref.joints))


@functools.lru_cache(maxsize=4)
def shifted_sigmas(shift: float) -> torch.Tensor:
    """The 1000 training sigmas of the release's flow-matching schedule (diffusers' Euler scheduler, ``shift``)."""
    from diffusers import FlowMatchEulerDiscreteScheduler  # on use: diffusers costs seconds

    return FlowMatchEulerDiscreteScheduler(num_train_timesteps=NUM_TRAIN_TIMESTEPS, shift=shift).sigmas.float()


def sample_sigma(cfg: TrainConfig, generator: torch.Generator) -> torch.Tensor:
    """(1,) noise level s in (0, 1] for one micro-batch (--timestep-sampling)."""
    if cfg.timestep_sampling == "uniform":
        return shifted_sigmas(cfg.shift)[torch.randint(NUM_TRAIN_TIMESTEPS, (1,), generator=generator)]
    from diffusers.training_utils import compute_density_for_timestep_sampling  # on use: diffusers costs seconds

    return compute_density_for_timestep_sampling("logit_normal", 1, logit_mean=0.0, logit_std=1.0, generator=generator)


def encode_clip(vae, clip, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(x0_rgb, x0_motion), each (1, C, f, h, w) normalised latents (fp32) of a clip's videos: what training
    denoises, and what ``comovi_core.training.prepare`` caches (the same code, so cached training equals uncached)."""
    with torch.no_grad():

        def as_video(f):
            return (f * 2 - 1).permute(3, 0, 1, 2)[None].to(device)  # (F,H,W,3) -> (1,3,F,H,W)

        return encode_frames(vae, as_video(clip.rgb)), encode_frames(vae, as_video(clip.motion_map))


def training_step(model, vae, body, clip, context, cfg: TrainConfig, generator) -> dict[str, torch.Tensor]:
    """One micro-batch: losses (differentiable) for ``clip`` (its videos encoded with ``vae`` first)."""
    core = getattr(model, "module", model)
    latents = encode_clip(vae, clip, next(core.parameters()).device)
    return latent_training_step(model, body, *latents, clip.motion, context, cfg, generator)


def latent_training_step(
    model, body, x0_rgb, x0_motion, motion, context, cfg: TrainConfig, generator
) -> dict[str, torch.Tensor]:
    """One micro-batch from latents (``encode_clip``) and SMPL targets ``motion`` (``global_orient``, ``body_pose``,
    ``betas`` per frame, or None): losses (differentiable). ``model`` may be wrapped (DDP): attributes are read
    from the wrapped module, the forward goes through the wrapper, under bf16 autocast for --precision bf16."""
    core = getattr(model, "module", model)
    device, dtype = next(core.parameters()).device, compute_dtype(cfg)
    x0_rgb, x0_motion = x0_rgb.to(device, torch.float32), x0_motion.to(device, torch.float32)
    sigma = sample_sigma(cfg, generator).to(device)
    mask = first_frame_mask(x0_rgb.shape, device)
    noise_rgb = torch.randn(x0_rgb.shape, generator=generator).to(device)
    noise_motion = torch.randn(x0_motion.shape, generator=generator).to(device)
    s = sigma.view(-1, 1, 1, 1, 1)

    def noisy(x0, eps):
        return ((1 - mask) * x0 + mask * ((1 - s) * x0 + s * eps)).to(dtype)  # frame 0 clean

    timestep = token_timesteps(mask, sigma[0] * NUM_TRAIN_TIMESTEPS, 1, core.comovi_config.patch_size)
    start_pose = None
    if core.smpl_head is not None and motion is not None and cfg.stage == 2:
        first = torch.from_numpy(motion.full_pose[:1])
        start_pose = axis_angle_to_rot6d(first.reshape(24, 3)).reshape(1, 144).to(device, dtype)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16"):
        out = model(
            noisy(x0_rgb, noise_rgb), noisy(x0_motion, noise_motion), timestep, context.to(device, dtype), start_pose
        )
    losses = {"motion": flow_loss(out.motion, noise_motion - x0_motion)}
    if cfg.stage == 2:
        losses["video"] = flow_loss(out.rgb, noise_rgb - x0_rgb)
        if out.smpl_6d is not None:
            losses["smpl"] = smpl_loss(body, out.smpl_6d.float(), motion)
    return losses


def drop_text(cfg: TrainConfig, generator: torch.Generator) -> bool:
    """Whether a micro-batch trains with the empty prompt (probability --text-dropout; no draw at all when it is 0,
    so runs without dropout keep their random streams)."""
    return cfg.text_dropout > 0 and float(torch.rand((), generator=generator)) < cfg.text_dropout


def micro_batch_generator(seed: int, step: int, index: int) -> torch.Generator:
    """The random stream of micro-batch ``index`` (counted over all processes) of optimizer step ``step``."""
    return torch.Generator().manual_seed(int(np.random.SeedSequence([seed, step, index]).generate_state(1)[0]))
