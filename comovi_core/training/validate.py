"""Validation during training (``train --validate-every N``): numbers that form a curve, and a sample to look at.

Every N optimizer steps (and at the last one), on one fixed clip (the data's first: shard 0, item 0):
1. **validation losses** (``val_loss_motion``, ``val_loss_video``, ``val_loss_smpl``) of the same
   ``VALIDATION_DRAWS`` (noise, timestep) draws each time, in ``metrics.jsonl`` and TensorBoard: unlike the
   training loss, whose noise level changes every step, these move only because the weights do;
2. **a generated sample**: the clip's prompt and start frames (and start pose) through the sampler
   (``sampling.sample``, ``--validate-steps`` UniPC steps, guidance ``VALIDATION_GUIDANCE`` against the empty
   prompt, a fixed seed), saved as ``validation/step_N.safetensors`` (latents of both branches, the 3D head's
   6D poses) and, when a VAE is at hand (--data, --synthetic, the tiny preset, or --vae with a --cache run),
   ``validation/step_N_rgb.mp4`` and ``step_N_motion_map.mp4``.

Every process runs it (a sharded model needs all of them); process 0 writes. Nothing here changes the training
random streams: a run with validation makes the same updates as one without.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import torch

VALIDATION_DRAWS = 4
VALIDATION_GUIDANCE = 5.0
VALIDATION_FPS = 16.0
VALIDATION_SEED_OFFSET = 1_000_003  # validation draws never coincide with a training micro-batch's stream


class Validation:
    def __init__(self, cfg, data, out: Path, vae=None):
        self.cfg, self.data, self.folder, self.vae = cfg, data, Path(out) / "validation", vae

    def due(self, step: int) -> bool:
        return self.cfg.validate_every > 0 and (step % self.cfg.validate_every == 0 or step == self.cfg.steps)

    @torch.no_grad()
    def run(self, model, body, step: int, device, is_main: bool) -> dict[str, float]:
        """Validation losses (returned as metrics) and the generated sample (written by process 0)."""
        from .step import latent_training_step

        sample = self.data.read(0, 0, device)
        cpu_rng = torch.get_rng_state()  # the training streams are seeded per micro-batch; keep the global one too
        sums: dict[str, float] = {}
        generator = torch.Generator(device="cpu").manual_seed(self.cfg.seed + VALIDATION_SEED_OFFSET)
        for _ in range(VALIDATION_DRAWS):
            losses = latent_training_step(
                model, body, sample.x0_rgb, sample.x0_motion, sample.motion, sample.context, self.cfg, generator
            )
            for name, value in losses.items():
                sums[name] = sums.get(name, 0.0) + float(value) / VALIDATION_DRAWS
        result = self._generate(model, sample, device)
        torch.set_rng_state(cpu_rng)
        if is_main:
            self._write(step, result)
        return {f"val_loss_{name}": value for name, value in sums.items()}

    def _generate(self, model, sample, device):
        from ..inference.sampling import sample as run_sampler

        start_pose = None
        if sample.motion is not None and getattr(model, "smpl_head", None) is not None:
            from ..body.rotations import axis_angle_to_rot6d

            pose = torch.from_numpy(np.asarray(sample.motion.full_pose[0], dtype=np.float32)).reshape(24, 3)
            start_pose = axis_angle_to_rot6d(pose).reshape(1, 144).to(device)
        autocast = (
            torch.autocast(device.type, torch.bfloat16) if self.cfg.precision == "bf16" else contextlib.nullcontext()
        )
        with autocast:
            return run_sampler(
                model,
                sample.x0_rgb[:, :, :1],
                sample.x0_motion[:, :, :1],
                sample.x0_rgb.shape[2],
                sample.context,
                negative_prompt_embeds=self.data.empty_context(device),
                start_pose_6d=start_pose,
                steps=self.cfg.validate_steps,
                guidance=VALIDATION_GUIDANCE,
                shift=self.cfg.shift,
                generator=torch.Generator(device=device).manual_seed(self.cfg.seed + VALIDATION_SEED_OFFSET),
            )

    def _write(self, step: int, result) -> None:
        from safetensors.torch import save_file

        from ..files.atomic import atomic_path

        self.folder.mkdir(parents=True, exist_ok=True)
        tensors = {"rgb": result.rgb, "motion_map": result.motion}
        if result.smpl_6d is not None:
            tensors["smpl_6d"] = result.smpl_6d
        with atomic_path(self.folder / f"step_{step:06d}.safetensors") as tmp:
            save_file({k: v.detach().float().cpu().contiguous() for k, v in tensors.items()}, str(tmp))
        if self.vae is None:
            return
        from ..codecs.vae import decode_latents
        from ..files.video import mp4_writer, to_uint8

        for name in ("rgb", "motion_map"):
            latents = tensors[name].to(next(self.vae.parameters()).device)
            frames = ((decode_latents(self.vae, latents)[0] + 1) / 2).permute(1, 2, 3, 0).cpu().numpy()
            with mp4_writer(self.folder / f"step_{step:06d}_{name}.mp4", *frames.shape[1:3], VALIDATION_FPS) as send:
                send(to_uint8(frames))
