"""Step caching for the dual transformer (TeaCache family): skip the block stack on steps where its input barely moved.

On a skipped ("reused") step each branch's block-stack output is its input plus the residual (output - input,
tokens (B, L, D)) the stack produced on the last computed step; patch embedding, time/text embeddings, output
heads and the 3D head still run, so a reused step costs a small fraction of a computed one.

Change indicator: the relative L1 change, since the previous step, of the timestep-modulated input of each
branch's first block, ``norm1(x) * (1 + scale) + shift`` (TeaCache). Why this one:
    - it is known before any block runs (one layer norm per branch), so deciding costs almost nothing;
    - it moves with both things that change between steps, the latents x_t and the noise level (shift and
      scale come from the timestep, per token for Wan2.2 TI2V), as the stack's output does;
    - MagCache's residual-magnitude ratio needs a per-model calibrated curve of ratios (a skipped step's residual
      is unknown at run time), and TeaCache's polynomial rescaling is per-model calibration too; CoMoVi's coupled
      pair has neither and every fine-tune would change them. We use the raw change, so a threshold is this
      model's own: ``benchmarks/bench_step_cache.py`` maps thresholds to savings and deviation.
Joint decision: the change of a step is the max over both branches (and over batch rows); it is accumulated over
reused steps, and once the sum reaches the threshold the stack runs and the sum resets. Both branches always skip
or compute together: the zero-initialised linears mix them inside every layer, so one branch's fresh output with
the other's stale one is a state the model never produces.
CFG: the sampler batches the cond and uncond passes in one call, so one decision covers both (guidance always
mixes cond and uncond outputs of the same step, both computed or both reused) and residuals are kept per row.
3D head: it reads the fused features of the last layer; their residual (fused - motion input) is kept too, so on a
reused step the head sees motion input + that residual, approximated exactly like the branches' outputs.
Memory: the previous step's modulated inputs (float32) and three residuals (model dtype), each (B, L, D): with CFG
at 81 frames of 1280x704 (18,480 tokens per branch, D 3072, bf16) about 1.6 GB on the device.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..errors import CoMoViError

Blocks = Callable[[torch.Tensor, torch.Tensor], tuple]  # (x_rgb, x_motion) -> (x_rgb, x_motion, fused or None)


@dataclass(frozen=True)
class StepCacheConfig:
    threshold: float | None = 0.1  # accumulated relative change that forces a computed step; 0 or None: all compute
    start: float = 0.1  # the first `start` fraction of the steps always compute (they lay out the video)
    end: float = 0.9  # steps from the `end` fraction on always compute (they set the details)

    def __post_init__(self) -> None:
        if self.threshold is not None and not (self.threshold >= 0 and math.isfinite(self.threshold)):
            raise CoMoViError(
                f"step cache threshold must be 0 (off) or more, got {self.threshold}; "
                "e.g. 0.1 (see the speed table in the README)"
            )
        if not 0 <= self.start <= self.end <= 1:
            raise CoMoViError(
                f"step cache start and end are fractions of the steps with 0 <= start <= end <= 1, "
                f"got start {self.start} and end {self.end}; e.g. start 0.1, end 0.9"
            )

    @property
    def enabled(self) -> bool:
        return bool(self.threshold)

    def cacheable_steps(self, num_steps: int) -> range:
        """The step indices that may reuse: [ceil(start*n), ceil(end*n)), never step 0 (nothing to reuse yet)."""

        def bound(fraction):
            return math.ceil(fraction * num_steps - 1e-9)  # 0.3 * 10 is 3, not 3.0000000000000004

        return range(max(1, bound(self.start)), bound(self.end)) if self.enabled else range(0)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def modulated_input(block, x: torch.Tensor, timestep_proj: torch.Tensor) -> torch.Tensor:
    """(B, L, D) float32: what a Wan block's self-attention reads, norm1(x) * (1 + scale) + shift.

    timestep_proj: (B, 6, D), or (B, L, 6, D) per token (Wan2.2 TI2V)."""
    table = block.scale_shift_table.to(x.device, torch.float32)  # (1, 6, D); may live elsewhere under block swap
    mod = (
        table.unsqueeze(0) + timestep_proj.float()
        if timestep_proj.ndim == 4
        else (table + timestep_proj.float()).unsqueeze(1)
    )
    return block.norm1(x.float()) * (1 + mod[..., 1, :]) + mod[..., 0, :]


def relative_l1(new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    """(B,) mean |new - old| / mean |old| per batch row."""
    dims = tuple(range(1, new.ndim))
    return (new - old).abs().mean(dims) / old.abs().mean(dims).clamp_min(1e-12)


class StepCache:
    """The cache of one sampling run: call ``begin_step(i)`` before step i's model call; the model calls ``run``.

    Counts: ``computed`` and ``reused`` model calls, ``decisions`` (one bool per step: computed)."""

    def __init__(self, config: StepCacheConfig, num_steps: int):
        self.config, self.num_steps = config, num_steps
        self.cacheable = config.cacheable_steps(num_steps)
        self.step = 0
        self.computed = self.reused = 0
        self.decisions: list[bool] = []
        self.accumulated = 0.0  # change summed over the steps since the last computed one
        self._previous = None  # (rgb, motion) modulated inputs of the previous step
        self._residuals = None  # (rgb, motion, fused or None) of the last computed step

    def begin_step(self, index: int) -> None:
        self.step = index

    def stats(self) -> dict:
        return {"computed": self.computed, "reused": self.reused}

    def run(
        self, model, blocks: Blocks, x_rgb: torch.Tensor, x_motion: torch.Tensor, timestep_proj: torch.Tensor
    ) -> tuple:
        """The stack's (x_rgb, x_motion, fused): ``blocks(x_rgb, x_motion)`` computed, or the inputs + stored
        residuals."""
        if not self.config.enabled:  # threshold 0: every step computes; nothing is stored
            self._count(True)
            return blocks(x_rgb, x_motion)
        with torch.no_grad():
            current = (
                modulated_input(model.rgb.blocks[0], x_rgb, timestep_proj),
                modulated_input(model.motion.blocks[0], x_motion, timestep_proj),
            )
            change = None
            if self._previous is not None and self._previous[0].shape == current[0].shape:
                rgb, motion = (relative_l1(new, old) for new, old in zip(current, self._previous))
                change = float(torch.maximum(rgb, motion).max())  # the pair's change: the larger branch, the larger row
        self._previous = current
        reusable = (
            self.step in self.cacheable
            and change is not None
            and self._residuals is not None
            and self._residuals[0].shape == x_rgb.shape
        )
        if reusable and self.accumulated + change < self.config.threshold:
            self.accumulated += change
            self._count(False)
            rgb, motion, fused = self._residuals
            return x_rgb + rgb, x_motion + motion, None if fused is None else x_motion + fused
        self.accumulated = 0.0
        self._count(True)
        out_rgb, out_motion, fused = blocks(x_rgb, x_motion)
        self._residuals = (out_rgb - x_rgb, out_motion - x_motion, None if fused is None else fused - x_motion)
        return out_rgb, out_motion, fused

    def _count(self, computed: bool) -> None:
        self.decisions.append(computed)
        self.computed += computed
        self.reused += not computed


def describe_evaluations(evaluations: dict) -> str:
    """One line for people: how many of the loop's transformer evaluations ran and how many were reused."""
    computed, reused = evaluations["computed"], evaluations["reused"]
    return (
        f"step cache: {computed} of {computed + reused} transformer evaluations computed, {reused} reused "
        f"({(computed + reused) / max(computed, 1):.2f}x fewer)"
    )
