"""Estimate the start SMPL pose (pose, shape, place in the camera) from the start image and/or 2D keypoints.

Image path (``estimate_from_image``): a person box (from the keypoints, a mask, or a detector), the HMR 2.0
network (4D-Humans, MIT) or CameraHMR (research licence) on the crop -> SMPL pose, betas and a crop camera,
turned into a translation for the start image's camera. HMR 2.0 estimates no focal length: the field of view
sets it. CameraHMR's FLNet estimates it from the picture when its file lies next to CameraHMR's; the result
says which. With keypoints, a short refinement then moves the body so its joints reproject onto
them, pulled toward the network's pose and shape and kept within joint limits.

Keypoint path (``estimate_start_pose``, the fallback without estimator weights): the body is fitted from
the rest pose so its joints project onto DWPose / OpenPose COCO-18 keypoints, with joint limits; both
facing directions are tried. It can promise joints that reproject onto the keypoints and left/right,
front/back from their labels; it cannot know depth along the view ray of limbs (a 2D skeleton fits several
3D poses) nor body shape (betas stay zero). The keypoints are those ``conditions.keypoints`` draws for a body (the
neck between the shoulders, as DWPose makes it); SMPL's joints are not OpenPose's anatomical points (notably the
hips), so expect a few centimetres of systematic offset on real images. OpenPose JSON counts pixels from their
centres: ``keypoints_from_pose_json`` moves its points by half a pixel into our camera convention.

    python -m comovi_core.estimate IMAGE.png --estimator models/smpl_estimators/hmr2.ckpt --out start.npz
    python -m comovi_core.estimate IMAGE.png --estimator models/smpl_estimators/camerahmr_checkpoint_cleaned.ckpt \
        [--focal-net auto|none|FILE] --out start.npz
    python -m comovi_core.estimate IMAGE.png --keypoints POSE.json [--estimator ...] --out start.npz
    python -m comovi_core.estimate POSE.json --out start.npz [--body-model models/smpl] [--fov 50]

writes a one-frame motion (the start pose and its camera) for ``generate --smpl start.npz``.
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import logging
import math
import sys
from pathlib import Path

import numpy as np
import torch

from ..body.camera import PinholeCamera
from ..body.motion_file import SMPLMotion
from ..body.rotations import axis_angle_to_matrix, matrix_to_axis_angle
from ..conditions.keypoints import BODY_KEYPOINTS, joint_keypoints
from ..errors import CoMoViError, run_cli
from ..files.images import image_tensor
from .prior import joint_limits

log = logging.getLogger("comovi_core.recovery.estimate")

MIN_KEYPOINTS = 6
_FLIP = (math.pi, 0.0, 0.0)  # SMPL y-up, facing +z -> camera y-down, facing the camera


def keypoints_from_pose_json(frame: dict, person: int = 0) -> tuple[np.ndarray, tuple[int, int]]:
    """One OpenPose-style frame dict (``people``, ``canvas_height``, ``canvas_width``) -> ((18, 3) x, y, conf in
    pixels, (H, W)). Coordinates in [0, 1] (normalised by some tools) are scaled to pixels."""
    people = frame.get("people") or []
    if not people:
        raise CoMoViError("no person in the keypoints: run a pose estimator (DWPose/OpenPose) on the start image")
    if not 0 <= person < len(people):
        raise CoMoViError(f"person {person} asked for, but the keypoints hold {len(people)} (0..{len(people) - 1})")
    try:
        height, width = int(frame["canvas_height"]), int(frame["canvas_width"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CoMoViError("the keypoints carry no canvas_height/canvas_width: cannot place them in the image") from exc
    flat = people[person].get("pose_keypoints_2d") or []
    if len(flat) < 18 * 3:
        raise CoMoViError(f"expected 18 body keypoints (COCO-18, 54 numbers), got {len(flat)} numbers")
    points = np.asarray(flat[: 18 * 3], np.float64).reshape(18, 3)
    seen = points[:, 2] > 0
    if seen.any() and np.all(points[seen, :2] <= 1.0 + 1e-6):
        points[:, 0] *= width
        points[:, 1] *= height
    points[seen, :2] += 0.5  # OpenPose counts pixels from their centres; our cameras from their corners
    return points.astype(np.float32), (height, width)


def read_pose_json(path: Path, person: int = 0) -> tuple[np.ndarray, tuple[int, int]]:
    """An OpenPose/DWPose JSON file (a frame, or a list of them: the first is used) -> ``keypoints_from_pose_json``."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise CoMoViError(f"could not read the keypoints JSON {path}: {exc}") from exc
    frame = data[0] if isinstance(data, list) and data else data
    if not isinstance(frame, dict):
        raise CoMoViError(
            f"{path}: expected an OpenPose-style JSON object with 'people', 'canvas_height', 'canvas_width'"
        )
    return keypoints_from_pose_json(frame, person)


def _joint_targets(keypoints: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """-> (2D targets (13, 2), confidences (13,)) of the keypoints a skeleton gives (``BODY_KEYPOINTS``), the
    points ``joint_keypoints`` makes from the body's joints."""
    kp = torch.as_tensor(keypoints[list(BODY_KEYPOINTS)], dtype=torch.float32)
    conf = kp[:, 2].clamp(0, 1)
    if int((conf > 0.1).sum()) < MIN_KEYPOINTS:
        raise CoMoViError(
            f"only {int((conf > 0.1).sum())} body keypoints are confident; at least {MIN_KEYPOINTS} "
            "of neck, shoulders, elbows, wrists, hips, knees and ankles are needed "
            "(is the whole body in view?)"
        )
    return kp[:, :2], conf


def _initial_translation(body, camera: PinholeCamera, targets, conf) -> torch.Tensor:
    """Distance from the 2D vs 3D size of the visible skeleton; x, y from its 2D centre."""
    rest = body(torch.tensor([_FLIP]), torch.zeros(1, 69)).joints[0]  # (24, 3)
    seen = conf > 0.1
    j3, j2 = joint_keypoints(rest)[seen], targets[seen]
    size3 = (j3[:, :2] - j3[:, :2].mean(0)).norm(dim=-1).mean()
    size2 = (j2 - j2.mean(0)).norm(dim=-1).mean().clamp_min(1.0)
    z = float(camera.focal_length[1]) * float(size3) / float(size2)
    (fx, fy), (cx, cy) = camera.focal_length, camera.principal_point
    centre = j2.mean(0)
    offset = j3.mean(0)
    return torch.tensor(
        [(float(centre[0]) - cx) * z / fx - float(offset[0]), (float(centre[1]) - cy) * z / fy - float(offset[1]), z]
    )


def _fit(body, camera, targets, conf, yaw: float, iterations: int):
    flip = torch.tensor(_FLIP)
    turn = axis_angle_to_matrix(torch.tensor([0.0, yaw, 0.0]))
    start_orient = matrix_to_axis_angle(axis_angle_to_matrix(flip) @ turn)
    orient = start_orient.clone()[None].requires_grad_(True)
    pose = torch.zeros(1, 69, requires_grad=True)
    transl = _initial_translation(body, camera, targets, conf)[None].requires_grad_(True)
    scale = 0.02 * max(camera.height, camera.width)
    # global first, then all
    for params, steps in (([orient, transl], iterations // 3), ([orient, pose, transl], iterations)):
        optimiser = torch.optim.Adam(params, lr=0.02)
        for _ in range(steps):
            joints = body(orient, pose, None, transl).joints[0]
            error = (camera.project(joint_keypoints(joints)) - targets).square().sum(-1) / scale**2
            data = (conf * torch.log1p(error)).sum() / conf.sum()
            loss = data + 0.01 * pose.square().sum() + joint_limits(pose).sum()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    return float(data.detach()), orient.detach(), pose.detach(), transl.detach()


def estimate_start_pose(
    body,
    keypoints: np.ndarray,
    height: int,
    width: int,
    fov_degrees: float = 50.0,
    iterations: int = 240,
    fps: float = 16.0,
) -> SMPLMotion:
    """keypoints (18, 3) COCO-18 in pixels (x, y, confidence) -> a one-frame SMPLMotion (mean shape)."""
    if keypoints.shape != (18, 3) or not np.all(np.isfinite(keypoints)):
        raise CoMoViError(f"keypoints must be a finite (18, 3) array (COCO-18 x, y, confidence), got {keypoints.shape}")
    if not 1.0 <= fov_degrees <= 170.0:
        raise CoMoViError(
            f"field of view {fov_degrees} degrees is outside 1..170: give the start image's vertical "
            "field of view (about 50 for a phone or webcam picture)"
        )
    camera = PinholeCamera.default_for(height, width, fov_degrees)
    with torch.inference_mode(False), torch.enable_grad():
        body = copy.deepcopy(body).cpu().float()
        targets, conf = _joint_targets(keypoints)
        fits = [_fit(body, camera, targets, conf, yaw, iterations) for yaw in (0.0, math.pi)]
    _, orient, pose, transl = min(fits, key=lambda f: f[0])
    return SMPLMotion(orient.numpy(), pose.numpy(), np.zeros(10, np.float32), transl.numpy(), fps, camera)


# refinement of a network's estimate toward keypoints: weights of the pulls toward the network's pose and shape
REFINE_ITERATIONS = 150
POSE_PULL = 0.05  # per squared radian of body pose away from the network's
BETAS_PULL = 0.05  # per squared unit of betas away from the network's
LIMITS = 10.0  # per squared radian beyond joint limits


def refine_to_keypoints(
    body,
    camera: PinholeCamera,
    start: tuple[torch.Tensor, ...],
    keypoints: np.ndarray,
    iterations: int = REFINE_ITERATIONS,
) -> tuple[torch.Tensor, ...]:
    """Move an estimate (global_orient (3,), body_pose (69,), betas (10,), transl (3,)) so its joints reproject
    onto COCO-18 ``keypoints``: first place and turn only (depth from the skeleton's size), then everything,
    pulled toward the estimate's pose and shape and held within joint limits. -> the same four tensors."""
    targets, conf = _joint_targets(keypoints)
    orient0, pose0, betas0, transl0 = (torch.as_tensor(t, dtype=torch.float32).reshape(1, -1) for t in start)
    orient, pose, betas, transl = (t.clone().requires_grad_(True) for t in (orient0, pose0, betas0, transl0))
    scale = 0.02 * max(camera.height, camera.width)
    with torch.inference_mode(False), torch.enable_grad():
        body = copy.deepcopy(body).cpu().float()
        for params, steps in (([orient, transl], iterations // 3), ([orient, pose, betas, transl], iterations)):
            optimiser = torch.optim.Adam(params, lr=0.01)
            for _ in range(steps):
                joints = body(orient, pose, betas, transl).joints[0]
                error = (camera.project(joint_keypoints(joints)) - targets).square().sum(-1) / scale**2
                loss = (conf * torch.log1p(error)).sum() / conf.sum()
                loss = loss + POSE_PULL * (pose - pose0).square().sum() + BETAS_PULL * (betas - betas0).square().sum()
                loss = loss + LIMITS * joint_limits(pose).sum()
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                with torch.no_grad():
                    transl[:, 2].clamp_(min=0.1)
    return tuple(t.detach()[0] for t in (orient, pose, betas, transl))


def estimate_from_image(
    body,
    image: torch.Tensor,
    estimator=None,
    keypoints: np.ndarray | None = None,
    mask=None,
    detector=None,
    fov_degrees: float = 50.0,
    fps: float = 16.0,
    iterations: int = REFINE_ITERATIONS,
) -> tuple[SMPLMotion, dict]:
    """The start pose from the start image ``image`` (H, W, 3) RGB in [0, 1] -> (one-frame SMPLMotion, info).

    ``estimator``: an ``HMR2`` module or a ``CameraHMREstimator`` (``comovi_core.recovery.hmr.loading.load_estimator``)
    or None for the keypoint fit. The person box comes from ``keypoints`` (18, 3) COCO-18 pixels, else ``mask``
    (H, W), else ``detector`` (a callable image -> box, e.g. ``comovi_core.recovery.hmr.detect.PersonDetector``).
    ``info`` says which estimator, which focal length (the field of view, or CameraHMR's estimate: then the motion's
    camera is that focal's), which box, and the keypoint error."""
    image = torch.as_tensor(image)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise CoMoViError(f"the start image must be (H, W, 3) RGB, got {tuple(image.shape)}")
    height, width = image.shape[:2]
    if not 1.0 <= fov_degrees <= 170.0:
        raise CoMoViError(
            f"field of view {fov_degrees} degrees is outside 1..170: give the start image's vertical "
            "field of view (about 50 for a phone or webcam picture)"
        )
    if keypoints is not None and keypoints.shape != (18, 3):
        raise CoMoViError(f"keypoints must be (18, 3) COCO-18 x, y, confidence, got {keypoints.shape}")
    focal = f"field of view {fov_degrees:g} degrees"
    if estimator is None:
        if keypoints is None:
            raise CoMoViError(
                "no estimator weights and no keypoints: put HMR 2.0 or CameraHMR in models/smpl_estimators (see "
                "README, 'Start pose'), or connect body keypoints (DWPose / OpenPose)"
            )
        motion = estimate_start_pose(body, keypoints, height, width, fov_degrees, fps=fps)
        info = {"estimator": "keypoint fit", "focal": focal, "box": None}
    else:
        from .hmr.crop import box_from_mask, box_from_points
        from .hmr.estimator import estimate_body

        camera = PinholeCamera.default_for(height, width, fov_degrees)
        if keypoints is not None:
            box = box_from_points(keypoints, height, width)
        elif mask is not None:
            box = box_from_mask(mask)
        elif detector is not None:
            box = detector(image)
        else:
            raise CoMoViError("no person box: give body keypoints, a MASK of the person, or a detector")
        est = estimate_body(estimator, image, box, camera, focal)
        camera, focal = est.camera, est.focal_source
        params = (est.global_orient, est.body_pose, est.betas, est.transl)
        if keypoints is not None:
            params = refine_to_keypoints(body, camera, params, keypoints, iterations)
        orient, pose, betas, transl = (p.numpy()[None] for p in params)
        motion = SMPLMotion(orient, pose, betas[0], transl, fps, camera)
        info = {
            "estimator": est.backend + (" + keypoint refinement" if keypoints is not None else ""),
            "focal": focal,
            "box": [round(float(v), 1) for v in box],
        }
    if keypoints is not None:
        info["reprojection_px"] = reprojection_error_px(body, motion, keypoints)
    log.info("start pose: %s; focal length: %s; person box %s", info["estimator"], focal, info["box"])
    return motion, info


def _version(path: Path | None):
    stat = path.stat() if path is not None and path.is_file() else None
    return stat and (stat.st_size, stat.st_mtime_ns)


def cached_estimator(path, focal_net="auto"):
    """``load_estimator(path, focal_net)``, kept for the next call while the files are unchanged (path, size and
    modification time of the estimator and of its FLNet file): a graph run again with another picture does not read
    the 2.7 GB checkpoint again. One estimator is kept. ``focal_net``: CameraHMR's FLNet file, "auto" (the one next
    to ``path``) or None (the field of view sets the focal length)."""
    from .hmr.loading import resolve_focal_net

    path = Path(path).resolve()
    focal_path = resolve_focal_net(path, focal_net) if path.is_file() else None
    focal_path = focal_path and focal_path.resolve()
    return _load_estimator(path, _version(path), focal_net, focal_path, _version(focal_path))


@functools.lru_cache(maxsize=1)
def _load_estimator(path: Path, version, focal_net, focal_path, focal_version):
    from .hmr.loading import load_estimator

    return load_estimator(path, focal_net)  # the FLNet path and version only key the cache


@functools.lru_cache(maxsize=1)
def cached_detector(allow_download: bool):
    """The RT-DETR person detector (``PersonDetector.from_pretrained``), loaded once and kept."""
    from .hmr.detect import PersonDetector

    return PersonDetector.from_pretrained(allow_download=allow_download)


def estimate_start(
    body,
    image=None,
    pose_frames=None,
    person: int = 0,
    mask=None,
    estimator_path=None,
    fov_degrees: float = 50.0,
    allow_download: bool = False,
    focal_net="auto",
) -> tuple[SMPLMotion, torch.Tensor]:
    """What a graph gives (IMAGE (1, H, W, 3), POSE_KEYPOINT frames, MASK (1, H, W), an estimator file and, for
    CameraHMR, its FLNet file or "auto" / None) -> the start pose and a preview (1, H, W, 3) of the body over the
    picture (over white without a picture)."""
    keypoints = size = None
    if pose_frames is not None:
        frames = pose_frames if isinstance(pose_frames, list) else [pose_frames]
        if not frames:
            raise CoMoViError("the POSE_KEYPOINT input is empty: run the pose estimator on the start image")
        keypoints, size = keypoints_from_pose_json(frames[0], person)
    if image is None:
        if keypoints is None:
            raise CoMoViError("Estimate SMPL needs the start IMAGE, or body keypoints (POSE_KEYPOINT), or both")
        motion = estimate_start_pose(body, keypoints, *size, fov_degrees)
        picture = torch.ones(*size, 3)
    else:
        picture = torch.as_tensor(image)[0, ..., :3].float().cpu()
        if size is not None and size != tuple(picture.shape[:2]):
            raise CoMoViError(
                f"the keypoints are for a {size} canvas but the image is {tuple(picture.shape[:2])}: "
                "run the pose estimator on this image at its own size"
            )
        estimator = detector = None
        if estimator_path is not None:
            estimator = cached_estimator(estimator_path, focal_net)
            if keypoints is None and mask is None:
                detector = cached_detector(allow_download)
        mask = None if mask is None else torch.as_tensor(mask).reshape(-1, *torch.as_tensor(mask).shape[-2:])[0]
        motion, _ = estimate_from_image(body, picture, estimator, keypoints, mask, detector, fov_degrees)
    return motion, overlay_preview(body, motion, picture)[None]


def overlay_preview(body, motion: SMPLMotion, picture: torch.Tensor, opacity: float = 0.6) -> torch.Tensor:
    """The motion's first frame rendered (motion-map colours) over ``picture`` (H, W, 3) -> (H, W, 3)."""
    from ..motion_map.overlay import overlay
    from ..motion_map.render import render_motion_map

    with torch.no_grad():
        out = body(
            torch.as_tensor(motion.global_orient[:1]),
            torch.as_tensor(motion.body_pose[:1]),
            torch.as_tensor(motion.betas),
            torch.as_tensor(motion.transl[:1]),
        )
    frames = render_motion_map(out.vertices.float(), body.faces, body.part_ids, motion.camera, backend="torch")
    return overlay(picture[None], frames.images.cpu(), frames.mask.cpu(), opacity)[0]


def reprojection_error_px(body, motion: SMPLMotion, keypoints: np.ndarray) -> float:
    """Mean confidence-weighted distance (pixels) between the motion's frame-0 joints and the keypoints."""
    targets, conf = _joint_targets(keypoints)
    with torch.no_grad():
        joints = body(
            torch.as_tensor(motion.global_orient[:1]),
            torch.as_tensor(motion.body_pose[:1]),
            torch.as_tensor(motion.betas),
            torch.as_tensor(motion.transl[:1]),
        ).joints[0]
    distance = (motion.camera.project(joint_keypoints(joints).float()) - targets).norm(dim=-1)
    return float((conf * distance).sum() / conf.sum())


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m comovi_core.estimate", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "source",
        type=Path,
        help="the start image (.png/.jpg), or an OpenPose/DWPose JSON of it "
        "(COCO-18 body keypoints) for the keypoint-only fit",
    )
    p.add_argument("--out", type=Path, required=True, help="where to write the one-frame motion (.npz)")
    p.add_argument("--keypoints", type=Path, help="OpenPose/DWPose JSON of the start image: person box and refinement")
    p.add_argument(
        "--estimator",
        type=Path,
        help="HMR 2.0 or CameraHMR checkpoint (.ckpt or .safetensors); without it the body is fitted to the "
        "keypoints only",
    )
    p.add_argument(
        "--focal-net",
        default="auto",
        help="CameraHMR only: its focal-length network FLNet (cam_model_cleaned.ckpt); 'auto' finds it next to "
        "--estimator, 'none' uses --fov instead",
    )
    p.add_argument(
        "--detector",
        default=None,
        help="RT-DETR folder or Hugging Face repo for the person box when "
        "no keypoints are given (default PekingU/rtdetr_r50vd, from the local cache)",
    )
    p.add_argument("--download", action="store_true", help="allow downloading the detector from Hugging Face")
    p.add_argument("--person", type=int, default=0, help="which person of the keypoints JSON to use")
    p.add_argument(
        "--fov",
        type=float,
        default=50.0,
        help="vertical field of view of the start image, degrees (CameraHMR with its FLNet estimates it instead)",
    )
    p.add_argument("--body-model", type=Path, help="SMPL file or folder; default: the stand-in mannequin (not SMPL)")
    p.add_argument("--fps", type=float, default=16.0, help="frame rate stored in the motion")
    return p.parse_args(argv)


def focal_net_arg(value: str | None):
    """--focal-net on the command line -> ``load_estimator``'s focal_net: "auto", None ("none") or a path."""
    if value is None or value.lower() == "none":
        return None
    return "auto" if value.lower() == "auto" else Path(value)


def run(args: argparse.Namespace) -> SMPLMotion:
    from ..body.motion_file import check_motion_target, save_motion
    from ..body.smpl import load_body_model

    check_motion_target(args.out, "--out file")
    if args.source.suffix.lower() == ".json":  # keypoints only, as before
        keypoints, (height, width) = read_pose_json(args.source, args.person)
        body = load_body_model(args.body_model)
        motion = estimate_start_pose(body, keypoints, height, width, args.fov, fps=args.fps)
        info = {"estimator": "keypoint fit", "reprojection_px": reprojection_error_px(body, motion, keypoints)}
    else:
        image = image_tensor(args.source)
        keypoints = None
        if args.keypoints is not None:
            keypoints, size = read_pose_json(args.keypoints, args.person)
            if size != tuple(image.shape[:2]):
                raise CoMoViError(f"the keypoints are for a {size} canvas but the image is {tuple(image.shape[:2])}")
        estimator = detector = None
        if args.estimator is not None:
            from .hmr.loading import load_estimator

            estimator = load_estimator(args.estimator, focal_net_arg(args.focal_net))
            if keypoints is None:
                from .hmr.detect import DETECTOR_REPO, PersonDetector

                detector = PersonDetector.from_pretrained(args.detector or DETECTOR_REPO, args.download)
        body = load_body_model(args.body_model)
        motion, info = estimate_from_image(body, image, estimator, keypoints, None, detector, args.fov, args.fps)
    save_motion(args.out, motion)
    log.info(
        "start pose from %s (%s%s); wrote %s",
        args.source,
        info["estimator"],
        f", mean reprojection error {info['reprojection_px']:.1f} px" if "reprojection_px" in info else "",
        args.out,
    )
    return motion


def main(argv=None) -> int:
    return run_cli(parse_args, run, log, argv)


if __name__ == "__main__":
    sys.exit(main())
