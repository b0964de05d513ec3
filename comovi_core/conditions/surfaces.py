"""Depth, normal and mesh pictures of a posed body, from one pass of the motion map's rasteriser.

The motion-map backends (``motion_map.render``) draw any per-vertex colours with ``flat`` shading: given the colours
(n + 1) / 2 of the unit vertex normals n they return, per pixel, the perspective-correct interpolation of those
colours and the camera z of the visible surface. So one rasterisation gives the silhouette (z > 0), the depth and
the interpolated normal (2 c - 1, normalised again) that the three pictures below are made of. The silhouette is
the motion map's body mask exactly (same rasteriser, same mesh, same pixel centres).

Conventions (all in the OpenCV camera frame of ``body.camera``: x right, y down, z forward):

* depth, the MiDaS / Depth Anything look depth ControlNets and VACE take: grey, nearer is brighter, linear in
  inverse depth (disparity) 1/z, normalised per clip so the nearest body vertex of the clip is 1 and the farthest
  is ``DEPTH_FAR_VALUE``; background 0 (black).
* normal, the look of the normal-map estimators normal ControlNets are trained on (BAE / DSINE "ScanNet" colours,
  ControlNet 1.0's normal from MiDaS): R = (1 - n_x) / 2 (red: facing left), G = (1 - n_y) / 2 (green: facing up),
  B = (1 - n_z) / 2 (blue: facing the camera), i.e. (n' + 1) / 2 of the normal n' = -n in a left-up-toward-camera
  frame; a surface facing the camera is (0.5, 0.5, 1). The background is that same neutral (0.5, 0.5, 1), the colour
  those estimators give a flat backdrop.
* mesh, grey on black with a light at the camera: ``MESH_AMBIENT + MESH_DIFFUSE * max(0, -n_z)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..body.camera import PinholeCamera
from ..motion_map.colors import vertex_normals
from ..motion_map.render import backend_render_frames

DEPTH_FAR_VALUE = 0.2  # grey of the clip's farthest body vertex; the background is 0
NORMAL_BACKGROUND = (0.5, 0.5, 1.0)  # the colour of a surface facing the camera
MESH_AMBIENT, MESH_DIFFUSE = 0.2, 0.7  # mesh grey = ambient + diffuse * cos(angle to the camera axis)


@dataclass
class SurfaceFrames:
    depth: torch.Tensor  # (T, H, W) float32 camera z of the visible surface, 0 on background
    normals: torch.Tensor  # (T, H, W, 3) float32 unit camera-space normals, 0 on background
    mask: torch.Tensor  # (T, H, W) bool, True where the body is drawn


def render_surfaces(vertices: torch.Tensor, faces: torch.Tensor, camera: PinholeCamera, backend: str) -> SurfaceFrames:
    """vertices (T, V, 3) camera space, faces (F, 3) long, a concrete backend name -> ``SurfaceFrames``."""
    normals = vertex_normals(vertices, faces)  # (T, V, 3)
    images, depth = backend_render_frames(backend)(vertices, faces, normals * 0.5 + 0.5, normals, camera, "flat")
    mask = depth > 0
    pixel_normals = torch.zeros_like(images)
    pixel_normals[mask] = F.normalize(images[mask] * 2 - 1, dim=-1, eps=1e-6)  # body pixels only: few of them
    return SurfaceFrames(depth, pixel_normals, mask)


def depth_image(depth: torch.Tensor, near: float, far: float) -> torch.Tensor:
    """(T, H, W) camera z (0: background) and the clip's z range -> (T, H, W, 3) grey in [0, 1]."""
    inv_near, inv_far = 1.0 / near, 1.0 / far
    mask = depth > 0
    inverse = depth[mask].reciprocal()
    grey = torch.zeros_like(depth)
    if inv_near > inv_far:
        scaled = (inverse - inv_far) / (inv_near - inv_far)  # 0 at the farthest vertex, 1 at the nearest
        grey[mask] = (DEPTH_FAR_VALUE + (1.0 - DEPTH_FAR_VALUE) * scaled).clamp(0.0, 1.0)
    else:  # a clip whose body has a single depth
        grey[mask] = 1.0
    return grey[..., None].expand(*grey.shape, 3).contiguous()


def normal_image(surfaces: SurfaceFrames) -> torch.Tensor:
    """-> (T, H, W, 3) in [0, 1], the module docstring's normal colours."""
    image = torch.tensor(NORMAL_BACKGROUND, dtype=torch.float32, device=surfaces.normals.device)
    image = image.expand(surfaces.normals.shape).contiguous()
    image[surfaces.mask] = ((1.0 - surfaces.normals[surfaces.mask]) * 0.5).clamp(0.0, 1.0)
    return image


def mesh_image(surfaces: SurfaceFrames) -> torch.Tensor:
    """-> (T, H, W, 3) grey in [0, 1], black background."""
    grey = torch.zeros(surfaces.mask.shape, dtype=torch.float32, device=surfaces.mask.device)
    grey[surfaces.mask] = MESH_AMBIENT + MESH_DIFFUSE * (-surfaces.normals[surfaces.mask][:, 2]).clamp_min(0.0)
    return grey[..., None].expand(*grey.shape, 3).contiguous()
