"""The extension object ComfyUI loads through ``comfy_entrypoint``."""

from __future__ import annotations

from comfy_api.latest import ComfyExtension, io

from . import host
from .body_nodes import (
    ConcatSMPLMotions,
    EstimateSMPL,
    LoadSMPLModel,
    LoadSMPLMotion,
    SMPLMotionFrame,
    VideoToSMPLMotion,
)
from .cache_nodes import CoMoViStepCache
from .export_nodes import ExportSMPL
from .lora_nodes import LoadCoMoViLora
from .mocap_nodes import LoadMotionFile
from .motion_map_nodes import PreviewSMPLOverlay, RenderMotionMap
from .sampler_nodes import DualSampler, LoadCoMoVi, LoadCoMoViTransformer

NODES: list[type[io.ComfyNode]] = [
    LoadSMPLModel,
    LoadSMPLMotion,
    LoadMotionFile,
    EstimateSMPL,
    SMPLMotionFrame,
    ConcatSMPLMotions,
    VideoToSMPLMotion,
    RenderMotionMap,
    PreviewSMPLOverlay,
    ExportSMPL,
    LoadCoMoVi,
    LoadCoMoViTransformer,
    LoadCoMoViLora,
    CoMoViStepCache,
    DualSampler,
]


class CoMoViExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return NODES


async def comfy_entrypoint() -> CoMoViExtension:
    host.register_model_folders()
    return CoMoViExtension()
