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
    _check_image(image, camera)
    if isinstance(model, CameraHMREstimator) and model.focal_net is not None:
        camera, focal_source = _flnet_camera(model, image, camera, focal_source)
    return estimate_bodies(model, image[None], box[None], camera, focal_source)[0]


@torch.no_grad()
def estimate_bodies(
    model: HMR2 | CameraHMREstimator,
    images: torch.Tensor,
    boxes: np.ndarray,
    camera: PinholeCamera,
    focal_source: str,
    batch_size: int = 16,
) -> list[BodyEstimate]:
    """images (B, H, W, 3) RGB in [0, 1], boxes (B, 4) in pixels -> one body per image, the crops going through the
    network ``batch_size`` at a time (on the network's device). Every body is placed for ``camera``: CameraHMR's
    FLNet is not run here (``estimate_body`` runs it for one picture; a video takes one focal length per clip)."""
    if images.ndim != 4 or len(boxes) != len(images):
        raise CoMoViError(f"expected images (B, H, W, 3) and boxes (B, 4), got {tuple(images.shape)}, {boxes.shape}")
    for image in images[:1]:
        _check_image(image, camera)
    camerahmr = isinstance(model, CameraHMREstimator)
    network = model.model if camerahmr else model
    param = next(network.parameters())
    backend = "CameraHMR" if camerahmr else "HMR 2.0"
    bodies = []
    for start in range(0, len(images), max(1, batch_size)):
        windows = [crop_window(b) if camerahmr else square_window(b) for b in boxes[start : start + batch_size]]
        crops = torch.stack(
            [
                crop_person(image.cpu(), window, network.config, antialias=not camerahmr)
                for image, window in zip(images[start : start + batch_size], windows)
            ]
        ).to(param)  # (B, 3, S, S)
        if camerahmr:
            info = torch.stack([bbox_info(w, camera.image_size, camera.focal_length[1]) for w in windows]).to(param)
            out = network(crops, info)
        else:
            out = network(crops)
        bodies += [
            _body(out, i, window, camera, focal_source, box, backend)
            for i, (window, box) in enumerate(zip(windows, boxes[start : start + batch_size]))
        ]
    return bodies


def _check_image(image: torch.Tensor, camera: PinholeCamera) -> None:
    if image.ndim != 3 or image.shape[-1] != 3 or tuple(image.shape[:2]) != camera.image_size:
        raise CoMoViError(
            f"image must be (H, W, 3) RGB matching the camera {camera.image_size}, got {tuple(image.shape)}"
        )


def _flnet_camera(
    estimator: CameraHMREstimator, image: torch.Tensor, camera: PinholeCamera, focal_source: str
) -> tuple[PinholeCamera, str]:
    """CameraHMR as the release's demo: FLNet's camera for the picture, else ``camera`` (saying why)."""
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
        return camera, f"{focal_source} (FLNet's {vfov:.3g} degrees was implausible)"
    return estimated, f"estimated by CameraHMR (vertical field of view {vfov:.1f} degrees)"


def _body(out, i: int, window, camera: PinholeCamera, focal_source: str, box: np.ndarray, backend: str) -> BodyEstimate:
    """Output ``i`` of a batch -> its body in the full image."""
    rotations = torch.cat([out.global_orient[i : i + 1, None], out.body_pose[i : i + 1]], 1)[0].float().cpu()
    aa = matrix_to_axis_angle(rotations)  # (24, 3)
    transl = crop_camera_to_full(out.cam[i].float().cpu(), window, camera.principal_point, camera.focal_length[1])
    betas = out.betas[i].float().cpu()
    return BodyEstimate(aa[0], aa[1:].reshape(69), betas, transl, camera, focal_source, box, backend)
