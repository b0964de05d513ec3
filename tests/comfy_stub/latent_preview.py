"""Stand-in for ComfyUI's ``latent_preview``: a latent-to-RGB previewer like its Latent2RGBPreviewer, or None
when previews are off (``METHOD``)."""

import numpy as np
import torch
from PIL import Image

MAX_PREVIEW_RESOLUTION = 512
METHOD = {"name": "latent2rgb"}  # tests set "none"


class Latent2RGBPreviewer:
    def __init__(self, factors, bias):
        self.factors, self.bias = torch.tensor(factors).T, torch.tensor(bias)
        self.seen = []  # (B, C, f, h, w) latents it was given

    def decode_latent_to_preview(self, x0):
        self.seen.append(x0)
        rgb = torch.nn.functional.linear(x0[0, :, 0].movedim(0, -1), self.factors, self.bias)
        return Image.fromarray((((rgb + 1) / 2).clamp(0, 1) * 255).to(torch.uint8).numpy().astype(np.uint8))


def get_previewer(device, latent_format):
    if METHOD["name"] == "none":
        return None
    return Latent2RGBPreviewer(latent_format.latent_rgb_factors, latent_format.latent_rgb_factors_bias)
