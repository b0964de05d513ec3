"""Pinhole camera in the OpenCV convention (x right, y down, z forward).

Pixel (row r, column c) samples the ray through image point (u, v) = (c + 0.5, r + 0.5), so a
principal point of (W/2, H/2) is the image centre. This is the convention of the release's
renderer (PyTorch3D cameras built with ``cameras_from_opencv_projection``) and of OpenGL.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import CoMoViError

MIN_IMAGE_SIDE = 16  # smaller images hold too few pixels to say anything about a body


@dataclass(frozen=True)
class PinholeCamera:
    focal_length: tuple[float, float]  # (fx, fy) in pixels, > 0
    principal_point: tuple[float, float]  # (cx, cy) in pixels
    image_size: tuple[int, int]  # (H, W) in pixels

    def __post_init__(self) -> None:
        fx, fy = (float(f) for f in self.focal_length)
        if not (math.isfinite(fx) and math.isfinite(fy)) or fx <= 0 or fy <= 0:
            raise CoMoViError(
                f"camera focal_length must be two positive finite numbers of pixels, got {self.focal_length}; "
                "a typical value for a 1280-pixel-wide image is about 1000-1500"
            )
        cx, cy = (float(c) for c in self.principal_point)
        if not (math.isfinite(cx) and math.isfinite(cy)):
            raise CoMoViError(f"camera principal_point must be finite, got {self.principal_point}")
        h, w = self.image_size
        if int(h) != h or int(w) != w or h < MIN_IMAGE_SIDE or w < MIN_IMAGE_SIDE:
            raise CoMoViError(
                f"image_size (H, W) must be whole numbers of at least {MIN_IMAGE_SIDE} pixels, got {self.image_size}"
            )
        object.__setattr__(self, "focal_length", (fx, fy))
        object.__setattr__(self, "principal_point", (cx, cy))
        object.__setattr__(self, "image_size", (int(h), int(w)))

    @property
    def height(self) -> int:
        return self.image_size[0]

    @property
    def width(self) -> int:
        return self.image_size[1]

    @classmethod
    def default_for(cls, height: int, width: int, fov_degrees: float = 50.0) -> PinholeCamera:
        """A centred camera whose vertical field of view is ``fov_degrees``."""
        f = 0.5 * height / math.tan(math.radians(fov_degrees) / 2)
        return cls((f, f), (width / 2, height / 2), (height, width))

    def resized(self, height: int, width: int) -> PinholeCamera:
        """The same view rendered at another resolution (intrinsics scaled per axis)."""
        sy, sx = height / self.height, width / self.width
        return PinholeCamera(
            (self.focal_length[0] * sx, self.focal_length[1] * sy),
            (self.principal_point[0] * sx, self.principal_point[1] * sy),
            (height, width),
        )

    def cropped(self, top: int, left: int, height: int, width: int) -> PinholeCamera:
        """The view of the window of (height, width) pixels whose top-left pixel is (top, left)."""
        (cx, cy) = self.principal_point
        return PinholeCamera(self.focal_length, (cx - left, cy - top), (height, width))

    def padded_to(self, height: int, width: int) -> PinholeCamera:
        """The view after the image is padded (centred) to the aspect of (height, width) and resized to it, the
        geometry of ``conditioning.pad_to_aspect``; equals ``resized`` when the aspects already match."""
        h, w = self.height, self.width
        if w / h < width / height:
            new_h, new_w = h, round(h * width / height)
        else:
            new_h, new_w = round(w * height / width), w
        (fx, fy), (cx, cy) = self.focal_length, self.principal_point
        padded = PinholeCamera((fx, fy), (cx + (new_w - w) // 2, cy + (new_h - h) // 2), (new_h, new_w))
        return padded.resized(height, width)

    def project(self, points: torch.Tensor) -> torch.Tensor:
        """(..., 3) camera-space points -> (..., 2) image points (u, v); z must be > 0."""
        fx, fy = self.focal_length
        cx, cy = self.principal_point
        z = points[..., 2]
        return torch.stack((fx * points[..., 0] / z + cx, fy * points[..., 1] / z + cy), dim=-1)

    def pixel_rays(self, device=None, dtype=torch.float32) -> torch.Tensor:
        """(H, W, 3) camera-space ray directions through pixel centres, with z = 1."""
        fx, fy = self.focal_length
        cx, cy = self.principal_point
        v, u = torch.meshgrid(
            torch.arange(self.height, device=device, dtype=dtype) + 0.5,
            torch.arange(self.width, device=device, dtype=dtype) + 0.5,
            indexing="ij",
        )
        return torch.stack(((u - cx) / fx, (v - cy) / fy, torch.ones_like(u)), dim=-1)
