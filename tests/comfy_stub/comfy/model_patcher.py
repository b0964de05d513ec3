"""Stand-in for ``comfy.model_patcher.ModelPatcher``: the constructor and the attributes it sets on the model."""


class ModelPatcher:
    def __init__(self, model, load_device, offload_device, size=0, weight_inplace_update=False):
        self.size, self.model, self.load_device, self.offload_device = size, model, load_device, offload_device
        if not hasattr(model, "device"):
            model.device = offload_device
        for name in ("model_loaded_weight_memory", "lowvram_patch_counter"):
            if not hasattr(model, name):
                setattr(model, name, 0)

    def model_size(self):
        return self.size

    def loaded_size(self):
        return self.model.model_loaded_weight_memory

    def is_clone(self, other):
        return hasattr(other, "model") and self.model is other.model
