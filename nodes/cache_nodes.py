"""Step caching in ComfyUI: a small settings node whose output plugs into the sampler's optional ``step_cache``."""

from __future__ import annotations

from comfy_api.latest import io

from ..comovi_core.model.step_cache import StepCacheConfig
from .sockets import StepCache


class CoMoViStepCache(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        defaults = StepCacheConfig()
        return io.Schema(
            node_id="CoMoViStepCache",
            display_name="CoMoVi Step Cache (CoMoVi)",
            category="CoMoVi",
            description="Faster sampling: on steps where the transformer's input barely changed, both branches reuse "
            "their last residual instead of running the blocks (TeaCache-style, decided for the pair). "
            "Connect to the sampler's step_cache; its motion_info says how many steps were reused.",
            inputs=[
                io.Float.Input(
                    "threshold",
                    default=defaults.threshold,
                    min=0.0,
                    max=1.0,
                    step=0.01,
                    tooltip="accumulated input change that forces a computed step; higher = faster and "
                    "further from the uncached result; 0 = every step computes",
                ),
                io.Float.Input(
                    "start",
                    default=defaults.start,
                    min=0.0,
                    max=1.0,
                    step=0.01,
                    tooltip="fraction of the steps at the start that always compute",
                ),
                io.Float.Input(
                    "end",
                    default=defaults.end,
                    min=0.0,
                    max=1.0,
                    step=0.01,
                    tooltip="steps from this fraction on always compute",
                ),
            ],
            outputs=[StepCache.Output(display_name="step_cache")],
        )

    @classmethod
    def execute(cls, threshold, start, end) -> io.NodeOutput:
        return io.NodeOutput(StepCacheConfig(threshold, start, end))
