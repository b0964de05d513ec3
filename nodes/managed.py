"""The CoMoVi components under ComfyUI's model management.

Each module (transformer, VAE, umT5) gets a ``ModelPatcher`` with its real resident size, so ComfyUI
counts it when it plans memory, loads it with ``load_models_gpu`` (evicting its own models to make
room) and evicts it for its own models, "Unload models" and "Free memory". The modules move whole
(no LoRA patches, no partial loading: our layers are not ComfyUI's casting layers); block swap keeps
its swapped layer pairs on the CPU, fp8 storage is counted at one byte per weight.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field

import comfy.model_management
import comfy.model_patcher
import torch

from ..comovi_core.model.memory import place, resident_bytes

log = logging.getLogger(__name__)


class CoMoViPatcher(comfy.model_patcher.ModelPatcher):
    """A ModelPatcher over one of our plain PyTorch modules; it is either on ``load_device`` or off it."""

    def __init__(self, module: torch.nn.Module, load_device, offload_device):
        super().__init__(module, load_device, offload_device, size=resident_bytes(module))
        self.placed_on = next(module.parameters()).device

    def current_loaded_device(self):
        return self.placed_on

    def partially_load(self, device_to, extra_memory=0, force_patch_weights=False):
        if self.model.model_loaded_weight_memory > 0 and self.placed_on == torch.device(device_to):
            return 0
        place(self.model, device_to)
        self.placed_on = torch.device(device_to)
        self.model.model_loaded_weight_memory = self.model_size()
        log.info("CoMoVi: %s loaded on %s (%.1f MB)", type(self.model).__name__, device_to, self.model_size() / 2**20)
        return self.model_size()

    def partially_unload(self, device_to, memory_to_free=0, force_patch_weights=False):
        return 0  # all or nothing: ComfyUI then detaches the whole module

    def detach(self, unpatch_all=True):
        if not unpatch_all:  # ComfyUI re-registering a model it is about to load again: keep it where it is
            return self.model
        place(self.model, self.offload_device)
        self.placed_on = torch.device(self.offload_device)
        self.model.model_loaded_weight_memory = 0
        log.info("CoMoVi: %s unloaded to %s", type(self.model).__name__, self.offload_device)
        return self.model


@dataclass(eq=False)
class ManagedCoMoVi:
    """What the loaders hand the sampler (socket COMOVI_MODELS): the components and their patchers."""

    transformer: torch.nn.Module
    vae: object | None  # AutoencoderKLWan, or None (the sampler then needs ComfyUI's VAE)
    text_encoder: object | None  # UMT5TextEncoder / TinyTextEncoder, or None (then CONDITIONING)
    summary: str
    offload: bool = False  # after each use, give the device memory back at once
    patchers: dict = field(default_factory=dict)  # id(module) -> CoMoViPatcher

    def __post_init__(self):
        load, offload = comfy.model_management.get_torch_device(), comfy.model_management.unet_offload_device()
        modules = (self.transformer, self.vae, getattr(self.text_encoder, "model", None))
        self.patchers = {id(m): CoMoViPatcher(m, load, offload) for m in modules if isinstance(m, torch.nn.Module)}

    def with_transformer(self, transformer: torch.nn.Module, summary: str) -> ManagedCoMoVi:
        """The same VAE and text encoder (and their patchers) with another transformer (e.g. a LoRA merged in)."""
        other = ManagedCoMoVi(transformer, self.vae, self.text_encoder, summary, self.offload)
        other.patchers.update({k: p for k, p in self.patchers.items() if k != id(self.transformer)})
        return other

    def get_models(self) -> list:
        """ComfyUI's prompt tracker looks for this."""
        return list(self.patchers.values())

    @contextlib.contextmanager
    def on_device(self, module):
        """The pipeline's placement hook: ComfyUI loads ``module`` (making room) for the block."""
        patcher = self.patchers.get(id(module))
        if patcher is None:
            yield
            return
        comfy.model_management.load_models_gpu([patcher], force_full_load=True)
        try:
            yield
        finally:
            if self.offload:
                comfy.model_management.unload_model_and_clones(patcher)
