"""The joint denoising loop: RGB and motion latents, one scheduler, one CFG (docs/model.md, "Inference").

Wan2.2 TI2V conditioning: latent frame 0 of each branch holds the clean encoded start frame (start
image / rendered start motion map) with timestep 0 for its tokens; it is re-imposed on the model input
at every step. Both branches are stepped by ONE flow-matching scheduler on the 96-channel
concatenation, and classifier-free guidance uses one negative prompt for both. The sampler knows
nothing about the UI: progress, previews and cancellation go through
``callback(step, num_steps, t, latents, denoised)`` (``latents`` and ``denoised``: (rgb, motion) pairs after
the step and the step's clean estimates x0 = x_t - sigma_t * v), which may raise to stop.

Modes beyond the release (same joint model, no fine-tuning):
    cogenerate        both branches generated (default).
    motion_to_video   the motion branch is a given clean latent video; at every step it is replaced by
                      that video forward-noised to the current noise level (so timesteps stay those the
                      model was trained with). The RGB branch follows it through the m->v coupling.
    video_to_motion   the same for a given RGB video; the motion branch and the 3D head recover motion.
                      With ``single_m2v`` weights no RGB information reaches the motion stream, so the
                      motion is generated from the start frame and the text alone: it matches the video
                      only as far as the start frame and prompt determine it. Use ``dual``/``single_v2m``
                      weights (fine-tuned) for real video-to-motion.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ..errors import CoMoViError
from ..model.step_cache import StepCache, StepCacheConfig

SOLVERS = ("unipc", "euler")
GENERATION_MODES = ("cogenerate", "motion_to_video", "video_to_motion")
NUM_TRAIN_TIMESTEPS = 1000


def make_scheduler(solver: str = "unipc", shift: float = 5.0):
    """The release's flow-matching solvers as diffusers schedulers (UniPC is the default)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler  # on use: diffusers costs seconds

    if solver == "unipc":
        return UniPCMultistepScheduler(
            prediction_type="flow_prediction",
            use_flow_sigmas=True,
            flow_shift=shift,
            num_train_timesteps=NUM_TRAIN_TIMESTEPS,
        )
    if solver == "euler":
        return FlowMatchEulerDiscreteScheduler(shift=shift, num_train_timesteps=NUM_TRAIN_TIMESTEPS)
    raise CoMoViError(f"unknown solver {solver!r}; choose one of {list(SOLVERS)}")


@dataclass
class SampleResult:
    rgb: torch.Tensor  # (B, C, f, h, w) normalised latents, frame 0 = the start image
    motion: torch.Tensor  # (B, C, f, h, w) normalised latents, frame 0 = the start motion map
    smpl_6d: torch.Tensor | None  # (B, 4(f-1), 144) poses from the last step's conditional pass
    evaluations: dict = field(default_factory=dict)  # transformer calls (cond + uncond batched = one): computed, reused


def first_frame_mask(latent_shape: tuple, device, dtype=torch.float32) -> torch.Tensor:
    """(1, 1, f, h, w): 0 on latent frame 0 (given), 1 elsewhere (generated)."""
    _, _, f, h, w = latent_shape
    mask = torch.ones(1, 1, f, h, w, device=device, dtype=dtype)
    mask[:, :, 0] = 0
    return mask


def token_timesteps(mask: torch.Tensor, t: torch.Tensor, batch: int, patch=(1, 2, 2)) -> torch.Tensor:
    """(B, L) per-token timesteps: t everywhere, 0 on the tokens of latent frame 0."""
    per_token = mask[0, 0][:: patch[0], :: patch[1], :: patch[2]] * t
    return per_token.flatten().unsqueeze(0).expand(batch, -1)


def sample(
    model,
    rgb_condition: torch.Tensor,
    motion_condition: torch.Tensor,
    latent_frames: int,
    prompt_embeds: torch.Tensor,
    *,
    negative_prompt_embeds: torch.Tensor | None = None,
    start_pose_6d: torch.Tensor | None = None,
    steps: int = 50,
    guidance: float = 6.0,
    shift: float = 5.0,
    solver: str = "unipc",
    generator: torch.Generator | None = None,
    mode: str = "cogenerate",
    given_latents: torch.Tensor | None = None,
    callback: Callable | None = None,
    step_cache: StepCacheConfig | None = None,
) -> SampleResult:
    """Run the joint loop. Conditions: (B, C, 1, h, w) normalised latents of the start frames.

    ``latent_frames``: frames of the latent video (frame 0 included), ``prompt_embeds`` (B, text_len, D); the rest
    is keyword-only. ``negative_prompt_embeds``: the unconditional branch of classifier-free guidance, used when
    ``guidance`` > 1. ``start_pose_6d`` (B, 144): frame 0's pose for the 3D head (None without one).
    ``given_latents`` (B, C, f, h, w): the clean motion latents for ``motion_to_video`` or the clean
    RGB latents for ``video_to_motion``. ``step_cache``: reuse the block stack's residual on steps where
    its input barely changed (``comovi_core.model.step_cache``); None computes every step.
    """
    if mode not in GENERATION_MODES:
        raise CoMoViError(f"unknown mode {mode!r}; choose one of {list(GENERATION_MODES)}")
    if (mode == "cogenerate") != (given_latents is None):
        raise CoMoViError(f"mode {mode!r} {'needs' if mode != 'cogenerate' else 'takes no'} given latents")
    b, c, _, h, w = rgb_condition.shape
    shape = (b, c, latent_frames, h, w)
    device = rgb_condition.device
    rgb = torch.randn(shape, generator=generator, device=device, dtype=torch.float32)
    motion = torch.randn(shape, generator=generator, device=device, dtype=torch.float32)
    given_noise = (
        torch.randn(shape, generator=generator, device=device, dtype=torch.float32)
        if given_latents is not None
        else None
    )
    mask = first_frame_mask(shape, device)
    scheduler = make_scheduler(solver, shift)
    scheduler.set_timesteps(steps, device=device)
    use_cfg = guidance > 1.0 and negative_prompt_embeds is not None
    context = torch.cat([prompt_embeds, negative_prompt_embeds]) if use_cfg else prompt_embeds
    dtype = next(model.parameters()).dtype
    pose = None if start_pose_6d is None else (torch.cat([start_pose_6d, start_pose_6d]) if use_cfg else start_pose_6d)
    smpl = None
    cache = None if step_cache is None else StepCache(step_cache, len(scheduler.timesteps))
    cached = {} if cache is None else {"step_cache": cache}  # no new argument for models called without a cache
    for i, t in enumerate(scheduler.timesteps):
        if given_latents is not None:  # replace the given branch by its forward-noised clean latents
            sigma = t.float() / NUM_TRAIN_TIMESTEPS
            noised = (1 - sigma) * given_latents + sigma * given_noise
            rgb, motion = (rgb, noised) if mode == "motion_to_video" else (noised, motion)
        rgb_in = ((1 - mask) * rgb_condition + mask * rgb).to(dtype)
        motion_in = ((1 - mask) * motion_condition + mask * motion).to(dtype)
        timestep = token_timesteps(mask, t, b, model.comovi_config.patch_size)
        if use_cfg:
            rgb_in, motion_in, timestep = (
                torch.cat([rgb_in, rgb_in]),
                torch.cat([motion_in, motion_in]),
                torch.cat([timestep, timestep]),
            )
        if cache is not None:
            cache.begin_step(i)
        out = model(rgb_in, motion_in, timestep, context.to(dtype), pose, **cached)
        pred_rgb, pred_motion = out.rgb.float(), out.motion.float()
        if use_cfg:
            (cond_rgb, uncond_rgb), (cond_motion, uncond_motion) = pred_rgb.chunk(2), pred_motion.chunk(2)
            pred_rgb = uncond_rgb + guidance * (cond_rgb - uncond_rgb)
            pred_motion = uncond_motion + guidance * (cond_motion - uncond_motion)
        if out.smpl_6d is not None:
            smpl = out.smpl_6d[:b]
        x_rgb, x_motion = rgb, motion
        joint = scheduler.step(
            torch.cat([pred_rgb, pred_motion], 1), t, torch.cat([rgb, motion], 1), return_dict=False
        )[0]
        rgb, motion = joint[:, :c], joint[:, c:]
        if callback is not None:
            sigma = t.float() / NUM_TRAIN_TIMESTEPS
            denoised = (
                x_rgb - sigma * pred_rgb,
                x_motion - sigma * pred_motion,
            )  # flow matching: x_t = (1-s) x0 + s noise
            callback(i, len(scheduler.timesteps), t, (rgb, motion), denoised)
    rgb = (1 - mask) * rgb_condition + mask * rgb
    motion = (1 - mask) * motion_condition + mask * motion
    if mode == "motion_to_video":
        motion = given_latents
    elif mode == "video_to_motion":
        rgb = given_latents
    evaluations = cache.stats() if cache is not None else {"computed": len(scheduler.timesteps), "reused": 0}
    return SampleResult(rgb, motion, smpl, evaluations)
