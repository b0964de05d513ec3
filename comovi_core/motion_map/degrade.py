"""A degradation model for motion maps: what a generated map looks like next to a rendered one.

A motion map that comes out of the model has been through the Wan2.2 VAE (and a denoiser that only
approximates the training maps). Decoding and fitting must hold on such maps, so tests and
benchmarks degrade rendered maps with this model, in this order:

1. Mislabelled borders: a fraction of the pixels on a part, facing or silhouette border take the
   colour of a random 4-neighbour (the generated boundary is off by a pixel here and there).
2. Blur: Gaussian, ``blur_sigma`` pixels at the map's resolution (edges of flat colour regions smear).
3. Colour shift: one offset per channel and clip, uniform in +-``color_shift``.
4. Noise: Gaussian, ``noise_std`` per channel, smoothed over ``noise_sigma`` pixels (the VAE's error
   is spatially correlated, not per-pixel white noise); then clamped to [0, 1] as hosts deliver frames.

Calibration (``WAN22_VAE``), stated honestly: no Wan2.2 VAE weights are available offline, so the
numbers are not fitted to real round trips. They come from (a) the reported reconstruction quality
of the Wan2.2 (TI2V-5B) VAE, roughly 33-35 dB PSNR on natural video, and (b) its 16x16 spatial
compression, which cannot keep detail much finer than one or two pixels at the map's resolution:
blur sigma 1 px, correlated noise of std 0.01 (about 2.5/255), a colour shift of up to 0.01 and 30%
of border pixels mislabelled. Measured on the stand-in body's demo motion (5 frames, 352x640): PSNR
33.1 dB against the clean render over the whole frame (the low end of the reported range) and 28.2 dB
over the body's bounding box, where the error concentrates on edges. ``HARSH`` (blur 2 px, noise
0.02, shift 0.02, 60% of borders) gives 29.5 dB / 25.0 dB: a generated map may be worse than a VAE
round trip. On ``WAN22_VAE`` maps the fit stays within half the error of holding the start pose
(benchmarks/bench_fit_motion.py, figures in the README); ``HARSH`` maps are not benchmarked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from ..errors import CoMoViError


@dataclass(frozen=True)
class Degradation:
    blur_sigma: float = 1.0  # Gaussian blur, pixels at the map's resolution (0: none)
    noise_std: float = 0.01  # per-channel noise standard deviation, in [0, 1] colour units
    noise_sigma: float = 1.0  # spatial correlation of the noise, pixels (0: white noise)
    color_shift: float = 0.01  # per-channel, per-clip offset drawn uniformly from +-color_shift
    border_mislabel: float = 0.3  # fraction of border pixels that take a neighbour's colour


WAN22_VAE = Degradation()  # calibrated as the module docstring says
HARSH = replace(WAN22_VAE, blur_sigma=2.0, noise_std=0.02, color_shift=0.02, border_mislabel=0.6)
CLEAN = Degradation(0.0, 0.0, 0.0, 0.0, 0.0)


def gaussian_blur(images: torch.Tensor, sigma: float, padding: str = "reflect") -> torch.Tensor:
    """(N, C, H, W) -> same, separable Gaussian; ``padding`` is F.pad's mode ("replicate" for images of 1 pixel)."""
    if sigma <= 0:
        return images
    radius = max(1, math.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    kernel = kernel / kernel.sum()
    channels = images.shape[1]
    out = F.pad(images, (radius, radius, 0, 0), mode=padding)
    out = F.conv2d(out, kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1), groups=channels)
    out = F.pad(out, (0, 0, radius, radius), mode=padding)
    return F.conv2d(out, kernel.view(1, 1, -1, 1).repeat(channels, 1, 1, 1), groups=channels)


def _mislabel_borders(images: torch.Tensor, fraction: float, generator: torch.Generator | None) -> torch.Tensor:
    """(T, H, W, 3): border pixels (a 4-neighbour differs by more than half a semantic level or is
    background) take, with probability ``fraction``, the colour of a random 4-neighbour."""
    if fraction <= 0:
        return images
    t, h, w, _ = images.shape
    padded = F.pad(images.permute(0, 3, 1, 2), (1, 1, 1, 1), mode="replicate").permute(0, 2, 3, 1)  # (T, H+2, W+2, 3)
    shifts = ((0, 1), (2, 1), (1, 0), (1, 2))  # up, down, left, right neighbour
    neighbours = torch.stack([padded[:, dy : dy + h, dx : dx + w] for dy, dx in shifts])  # (4, T, H, W, 3)
    differs = ((neighbours - images).abs().amax(-1) > 0.5 / 48).any(0)  # (T, H, W)
    choice = torch.randint(0, 4, (t, h, w), generator=generator, device=images.device)
    flip = differs & (torch.rand((t, h, w), generator=generator, device=images.device) < fraction)
    picked = neighbours.gather(0, choice[None, ..., None].expand(1, t, h, w, 3))[0]
    return torch.where(flip[..., None], picked, images)


def degrade_motion_map(images: torch.Tensor, degradation: Degradation = WAN22_VAE, seed: int = 0) -> torch.Tensor:
    """images (T, H, W, 3) in [0, 1] -> a degraded copy, same shape, in [0, 1]. Deterministic for a seed."""
    if images.ndim != 4 or images.shape[-1] != 3:
        raise CoMoViError(f"motion maps must have shape (T, H, W, 3), got {tuple(images.shape)}")
    generator = torch.Generator(images.device).manual_seed(seed)
    out = _mislabel_borders(images.float(), degradation.border_mislabel, generator)
    out = gaussian_blur(out.permute(0, 3, 1, 2), degradation.blur_sigma)  # (T, 3, H, W)
    shift = (torch.rand(3, generator=generator, device=images.device) * 2 - 1) * degradation.color_shift
    noise = torch.randn(out.shape, generator=generator, device=images.device)
    if degradation.noise_sigma > 0:  # keep the std after smoothing
        noise = gaussian_blur(noise, degradation.noise_sigma)
        noise = noise / noise.std().clamp_min(1e-12)
    out = out + shift.view(1, 3, 1, 1) + degradation.noise_std * noise
    return out.clamp(0, 1).permute(0, 2, 3, 1).contiguous()


def psnr(images: torch.Tensor, reference: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB of two [0, 1] image stacks."""
    mse = float((images.float() - reference.float()).square().mean())
    return float("inf") if mse == 0 else -10 * math.log10(mse)
