"""Stand-in for ``comfy.model_management``: device, interrupt, and the loaded-model list with ComfyUI's semantics
(``load_models_gpu`` loads through the patcher and lists it; unloading detaches it and drops it from the list)."""

import torch

INTERRUPT = {"flag": False}


class InterruptProcessingException(Exception):
    pass


def get_torch_device():
    return torch.device("cpu")


def unet_offload_device():
    return torch.device("cpu")


def throw_exception_if_processing_interrupted():
    if INTERRUPT["flag"]:
        INTERRUPT["flag"] = False
        raise InterruptProcessingException()


current_loaded_models: list = []  # patchers, most recent first (ComfyUI keeps LoadedModel wrappers)
LOADS: list = []  # patchers passed to load_models_gpu, in order


def load_models_gpu(
    models, memory_required=0, force_patch_weights=False, minimum_memory_required=None, force_full_load=False
):
    for patcher in models:
        LOADS.append(patcher)
        if patcher in current_loaded_models:  # ComfyUI drops the entry (detach without unpatching) and loads it again
            current_loaded_models.remove(patcher)
            patcher.detach(unpatch_all=False)
        patcher.partially_load(patcher.load_device, 1e32)
        current_loaded_models.insert(0, patcher)


def _unload(patcher):
    patcher.detach(True)
    current_loaded_models.remove(patcher)


def unload_model_and_clones(model, unload_additional_models=True, all_devices=False):
    for patcher in [p for p in current_loaded_models if p.is_clone(model)]:
        _unload(patcher)


def unload_all_models():
    for patcher in list(current_loaded_models):
        _unload(patcher)


def loaded_models(only_currently_used=False):
    return list(current_loaded_models)
