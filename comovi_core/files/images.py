"""Read pictures: a start image as RGB, refusing absurd sizes before any decoding work."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from ..errors import CoMoViError

MAX_IMAGE_PIXELS = 64_000_000  # larger inputs are refused before any decoding work


def load_image(path) -> Image.Image:
    """Open an image as RGB, refusing absurd sizes; grayscale and RGBA are converted (alpha over white)."""
    try:
        image = Image.open(path)
    except Image.DecompressionBombError as exc:  # PIL refuses the header of a huge image before we see its size
        raise CoMoViError(
            f"the start image {path} is far above {MAX_IMAGE_PIXELS // 1_000_000} megapixels ({exc}); resize it first"
        ) from exc
    except (OSError, ValueError) as exc:
        raise CoMoViError(f"could not read the start image {path}: {exc}") from exc
    if image.width * image.height > MAX_IMAGE_PIXELS:
        raise CoMoViError(
            f"the start image is {image.width}x{image.height}; images above {MAX_IMAGE_PIXELS // 1_000_000} "
            "megapixels are refused, resize it first"
        )
    if image.mode in ("RGBA", "LA", "P"):
        image = image.convert("RGBA")
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, image)
    return image.convert("RGB")


def image_tensor(path) -> torch.Tensor:
    """An image file -> (H, W, 3) RGB float in [0, 1], read and checked by ``load_image``."""
    return torch.from_numpy(np.asarray(load_image(path), np.float32) / 255.0)
