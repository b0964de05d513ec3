"""Image + person box -> SMPL pose, shape and full-image translation from HMR 2.0 or CameraHMR (one person)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from ...body.camera import PinholeCamera
from ...body.rotations import matrix_to_axis_angle
from ...errors import CoMoViError
from .camerahmr import CameraHMREstimator, bbox_info, crop_window
from .crop import crop_camera_to_full, crop_person, square_window
from .fl_net import PLAUSIBLE_VFOV_DEGREES, estimate_camera
from .model import HMR2

log = logging.getLogger(__name__)


@dataclass
class BodyEstimate:
    global_orient: torch.Tensor  # (3,) axis-angle, camera frame (x right, y down, z forward)
    body_pose: torch.Tensor  # (69,) axis-angle
    betas: torch.Tensor  # (10,)
    transl: torch.Tensor  # (3,) metres, camera space, for ``camera``
    camera: PinholeCamera  # the full image's camera the translation is for
    focal_source: str  # which focal length placed the body: "estimated by <backend>" or "field of view <deg>"
    box: np.ndarray  # (4,) x0, y0, x1, y1 the person box used
    backend: str = "HMR 2.0"  # the network that estimated the body


@torch.no_grad()
def estimate_body(
    model: HMR2 | CameraHMREstimator, image: torch.Tensor, box: np.ndarray, camera: PinholeCamera, focal_source: str
) -> BodyEstimate:
    """image (H, W, 3) RGB in [0, 1], box (4,) in pixels -> the body in the full image.

    HMR 2.0 predicts no focal length: its weak-perspective crop camera is turned into a translation for
    ``camera``'s focal length, so the body keeps its place and size in the picture at that focal. CameraHMR
    (``CameraHMREstimator``) takes the focal length FLNet estimates from the picture when it has FLNet (the
    returned camera and ``focal_source`` say so), else ``camera``'s."""
    if image.ndim != 3 or image.shape[-1] != 3 or tuple(image.shape[:2]) != camera.image_size:
        raise CoMoViError(
            f"image must be (H, W, 3) RGB matching the camera {camera.image_size}, got {tuple(image.shape)}"
        )
    if isinstance(model, CameraHMREstimator):
        return _estimate_camerahmr(model, image, box, camera, focal_source)
    window = square_window(box)
    param = next(model.parameters())
    crop = crop_person(image.cpu(), window, model.config)[None].to(param)
    out = model(crop)
    return _body(out, window, camera, focal_source, box, "HMR 2.0")


def _estimate_camerahmr(
    estimator: CameraHMREstimator, image: torch.Tensor, box: np.ndarray, camera: PinholeCamera, focal_source: str
) -> BodyEstimate:
    """CameraHMR as the release's demo: FLNet's camera, the box's longer side as a square crop, the box info."""
    if estimator.focal_net is not None:
        estimated, vfov = estimate_camera(estimator.focal_net, image)
        if estimated is None:
            low, high = PLAUSIBLE_VFOV_DEGREES
            log.warning(
                "the focal-length network gave a vertical field of view of %.3g degrees, outside %g-%g: is its file "
                "the released cam_model_cleaned.ckpt? Using the given field of view instead (%s)",
                vfov,
                low,
                high,
                focal_source,
            )
            focal_source = f"{focal_source} (FLNet's {vfov:.3g} degrees was implausible)"
        else:
            camera = estimated
            focal_source = f"estimated by CameraHMR (vertical field of view {vfov:.1f} degrees)"
    model = estimator.model
    window = crop_window(box)
    param = next(model.parameters())
    crop = crop_person(image.cpu(), window, model.config, antialias=False)[None].to(param)
    info = bbox_info(window, camera.image_size, camera.focal_length[1])[None].to(param)
    return _body(model(crop, info), window, camera, focal_source, box, "CameraHMR")


def _body(out, window, camera: PinholeCamera, focal_source: str, box: np.ndarray, backend: str) -> BodyEstimate:
    rotations = torch.cat([out.global_orient[:, None], out.body_pose], 1)[0].float().cpu()  # (24, 3, 3)
    aa = matrix_to_axis_angle(rotations)
    transl = crop_camera_to_full(out.cam[0].float().cpu(), window, camera.principal_point, camera.focal_length[1])
    betas = out.betas[0].float().cpu()
    return BodyEstimate(aa[0], aa[1:].reshape(69), betas, transl, camera, focal_source, box, backend)
