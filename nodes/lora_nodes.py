"""LoRA in ComfyUI: merge a CoMoVi LoRA file (python -m comovi_core.train --lora) into the loaded transformer."""

from __future__ import annotations

from comfy_api.latest import io

from ..comovi_core.model.lora import with_lora
from . import host
from .sockets import CoMoViModels


class LoadCoMoViLora(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="CoMoViLoraLoader",
            display_name="Load CoMoVi LoRA (CoMoVi)",
            category="CoMoVi",
            description=(
                "Merge a CoMoVi LoRA (trained with python -m comovi_core.train --lora) from models/loras "
                "into the transformer. The loader's model stays as it was: only the adapted layers get new weights "
                "(extra memory: their size), the rest is shared. Load without fp8_weights to use a LoRA."
            ),
            inputs=[
                CoMoViModels.Input("comovi"),
                io.Combo.Input("lora", options=host.lora_files(), tooltip="CoMoVi LoRA .safetensors in models/loras"),
                io.Float.Input(
                    "strength",
                    default=1.0,
                    min=-4.0,
                    max=4.0,
                    step=0.05,
                    tooltip="scale of the LoRA (0: the model as loaded, 1: as trained)",
                ),
            ],
            outputs=[CoMoViModels.Output(display_name="comovi")],
        )

    @classmethod
    def execute(cls, comovi, lora, strength) -> io.NodeOutput:
        if strength == 0:
            return io.NodeOutput(comovi)
        transformer = with_lora(comovi.transformer, host.lora_path(lora), strength)
        return io.NodeOutput(comovi.with_transformer(transformer, f"{comovi.summary}; LoRA {lora} at {strength:g}"))
