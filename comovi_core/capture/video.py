"""A video of one person -> the SMPL motion of that person: the capture core.

1. The person's box in every frame (``track``): given boxes, masks or keypoints, or a detector's detections
   linked into one identity.
2. One camera for the clip: CameraHMR's FLNet on up to ``focal_frames`` frames, the median focal length (the
   field of view ``fov_degrees`` when there is no FLNet, as with HMR 2.0, or when its answers are implausible).
3. The body in every frame: HMR 2.0 or CameraHMR on the person crops, ``batch_size`` at a time
   (``recovery.hmr.estimator.estimate_bodies``).
4. One shape for the clip (the robust mean of the frames' betas, or the first frame's), and every frame's
   translation solved again for it, so the body keeps the place and size the network saw in the picture.
5. A confidence per frame: the detection score (halved where the box was interpolated, 0 where the person was
   lost) times the estimate's agreement with its neighbours (its rotations' distance from a smoothed motion).
6. Smoothing in rotation space, weighted by that confidence (``smooth.smooth_motion``), then foot locking.
7. A verdict: "rejected" with the reasons when the person was lost too often, too many frames hold several
   people, the person is too small or the estimates too unsure.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch

from ..body.camera import PinholeCamera
from ..body.motion_file import SMPLMotion
from ..errors import CoMoViError
from ..recovery.hmr.fl_net import PLAUSIBLE_VFOV_DEGREES
from .smooth import continuous_quaternions, lock_feet, smooth_motion
from .track import PersonTrack, boxes_from_keypoints, boxes_from_masks, detections_of, track_person

log = logging.getLogger(__name__)

SHAPE_RULES = {
    "robust_mean": "the mean of the reliable frames' betas, the outer 20% of each coefficient left out",
    "first_frame": "the first reliable frame's betas (the paper's choice)",
}
MIN_DEVIATION_DEG = 5.0  # an estimate this far (mean joint angle) from its smoothed neighbours is still trusted
INTERPOLATED_SCORE = 0.5  # the detection score given to a frame whose box was interpolated


@dataclass(frozen=True)
class CaptureOptions:
    batch_size: int = 16  # person crops per network call
    shape: str = "robust_mean"  # one body shape per clip: "robust_mean" or "first_frame" (the paper's choice)
    smoothing: float = 1.0  # temporal smoothing strength: 0 off, 1 default (cutoff smooth.CUTOFF_HZ), 2 half the cutoff
    lock_feet: bool = True  # find standing feet and move the root so they stay put
    min_score: float = 0.5  # detections below this score are ignored
    max_gap: int = 8  # frames a track may miss and still be linked; gaps up to this long are interpolated
    rule: str = "largest"  # which track is the subject: "largest" or "longest" (track.RULES)
    fov_degrees: float = 50.0  # vertical field of view when the estimator has no focal network or FLNet is implausible
    focal_frames: int = 16  # frames (evenly spread) FLNet looks at for the clip's focal length
    max_lost_fraction: float = 0.2  # reject when the person is lost in more than this fraction of the frames
    max_crowded_fraction: float = 0.5  # reject when more than this fraction of the frames holds several people
    min_confidence: float = 0.5  # reject when the mean confidence of the frames is below this
    min_box_fraction: float = 0.1  # reject when the person's median height / image height is below this

    def __post_init__(self) -> None:
        if self.shape not in SHAPE_RULES:
            raise CoMoViError(f"unknown shape rule {self.shape!r}: choose one of {sorted(SHAPE_RULES)}")
        if self.batch_size < 1:
            raise CoMoViError(f"batch_size must be >= 1, got {self.batch_size}")


@dataclass
class CaptureResult:
    motion: SMPLMotion  # T frames, camera = the clip's camera (one focal length per clip)
    confidence: np.ndarray  # (T,) in [0, 1] per frame
    track: PersonTrack  # the subject's box in every frame and how it was found
    verdict: str  # "ok" or "rejected"
    reasons: list[str]  # why it was rejected (and warnings, which start with "warning:")
    info: dict = field(default_factory=dict)  # estimator name, focal length source, shape rule, timings

    def summary(self) -> str:
        """A few lines for a person: the verdict and its reasons, the estimator, boxes, focal length, confidence."""
        lines = [f"{self.verdict}: {self.motion.num_frames} frames at {self.motion.fps:g} fps"]
        lines += [f"- {reason}" for reason in self.reasons]
        lines += [
            f"estimator: {self.info.get('estimator')}; person boxes from {self.info.get('boxes')}",
            f"focal length: {self.info.get('focal_source')}",
            f"mean confidence {float(self.confidence.mean()):.2f} (lowest {float(self.confidence.min()):.2f})",
        ]
        return "\n".join(lines)


class BatchEstimator(Protocol):
    """Any per-frame body estimator ``capture_motion`` can use besides HMR 2.0 and CameraHMR: images (B, H, W, 3),
    person boxes (B, 4), the clip's camera and the frames' indices in the clip (B,) -> one ``BodyEstimate`` each."""

    def __call__(self, images: torch.Tensor, boxes: np.ndarray, camera: PinholeCamera, indices: np.ndarray) -> list: ...


def clip_camera(estimator, frames: torch.Tensor, *, fov_degrees: float = 50.0, focal_frames: int = 16):
    """-> (the clip's camera, where its focal length came from): the median of FLNet's focal lengths over up to
    ``focal_frames`` evenly spread frames when ``estimator`` carries a focal network, else (or when fewer than half
    its answers are plausible, ``PLAUSIBLE_VFOV_DEGREES``) the field of view ``fov_degrees``."""
    from ..recovery.hmr.fl_net import estimate_camera

    height, width = frames.shape[1:3]
    default = PinholeCamera.default_for(height, width, fov_degrees)
    source = f"field of view {fov_degrees:g} degrees"
    focal_net = getattr(estimator, "focal_net", None)
    if focal_net is None:
        return default, source
    picks = np.unique(np.linspace(0, len(frames) - 1, min(len(frames), max(1, focal_frames))).round().astype(int))
    vfovs = np.array([estimate_camera(focal_net, frames[i])[1] for i in picks])
    low, high = PLAUSIBLE_VFOV_DEGREES
    plausible = vfovs[np.isfinite(vfovs) & (vfovs >= low) & (vfovs <= high)]
    if 2 * len(plausible) < len(vfovs):
        log.warning(
            "the focal-length network gave implausible fields of view (median %.3g degrees, outside %g-%g): "
            "using %g degrees",
            float(np.median(vfovs)),
            low,
            high,
            fov_degrees,
        )
        return default, f"{source} (FLNet's median {float(np.median(vfovs)):.3g} degrees was implausible)"
    focal = float(np.median(height / (2 * np.tan(np.radians(plausible) / 2))))
    vfov = math.degrees(2 * math.atan(height / (2 * focal)))
    camera = PinholeCamera((focal, focal), (width / 2, height / 2), (height, width))
    return camera, f"estimated by CameraHMR (median of {len(plausible)} frames: vertical field of view {vfov:.1f} deg)"


def clip_betas(betas: np.ndarray, reliable: np.ndarray, rule: str = "robust_mean") -> np.ndarray:
    """betas (T, 10) of every frame, reliable (T,) bool -> (10,) the clip's shape by ``rule`` (``SHAPE_RULES``)."""
    use = betas[reliable] if reliable.any() else betas
    if rule == "first_frame":
        return use[0].astype(np.float32)
    ordered = np.sort(use, 0)
    cut = int(0.2 * len(ordered))
    return ordered[cut : len(ordered) - cut].mean(0).astype(np.float32)


def solve_translation(
    body, global_orient, body_pose, betas: np.ndarray, targets: torch.Tensor, camera: PinholeCamera
) -> np.ndarray:
    """The translation (T, 3) that puts the body (poses (T, 3), (T, 69), shape ``betas`` (10,)) where its 24 joints
    project onto ``targets`` (T, 24, 2) pixels: per frame the linear least-squares solution of
    ``f (X + t_x) = (u - c) (Z + t_z)`` (and the same for y), the reprojection error weighted by depth."""
    with torch.no_grad():
        joints = body(torch.as_tensor(global_orient), torch.as_tensor(body_pose), torch.as_tensor(betas)).joints
    joints = joints.double()  # (T, 24, 3) root at its rest place, no translation
    (fx, fy), (cx, cy) = camera.focal_length, camera.principal_point
    du, dv = targets[..., 0].double() - cx, targets[..., 1].double() - cy  # (T, 24)
    zero = torch.zeros_like(du)
    rows_x = torch.stack([torch.full_like(du, fx), zero, -du], -1)  # (T, 24, 3)
    rows_y = torch.stack([zero, torch.full_like(dv, fy), -dv], -1)
    a = torch.cat([rows_x, rows_y], 1)  # (T, 48, 3)
    b = torch.cat([du * joints[..., 2] - fx * joints[..., 0], dv * joints[..., 2] - fy * joints[..., 1]], 1)
    return torch.linalg.lstsq(a, b[..., None]).solution[..., 0].float().numpy()


def with_body_shape(body, motion: SMPLMotion, betas: np.ndarray) -> SMPLMotion:
    """``motion`` with the body shape ``betas`` (10,) instead of its own: the same rotations, every frame's translation
    solved again (``solve_translation``) so the joints project where ``motion``'s did in ``motion.camera``. E.g. a
    capture's estimates given the shape of a start pose, so that a fit from that start can begin from them."""
    orient, pose = torch.from_numpy(motion.global_orient).float(), torch.from_numpy(motion.body_pose).float()
    seen_betas, seen_transl = torch.from_numpy(motion.betas).float(), torch.from_numpy(motion.transl).float()
    betas = np.asarray(betas, np.float32)
    transl = _placed_again(body, orient, pose, seen_betas, seen_transl, betas, motion.camera)
    return dataclasses.replace(motion, betas=betas, transl=transl)


def _placed_again(body, orient, pose, seen_betas, seen_transl, betas: np.ndarray, camera: PinholeCamera) -> np.ndarray:
    """The translation (T, 3) that puts the body of shape ``betas`` where the one seen (``seen_betas`` (10,) or
    (T, 10), ``seen_transl`` (T, 3), same rotations) projects its joints (``solve_translation``), never behind the
    camera."""
    with torch.no_grad():
        targets = camera.project(body(orient, pose, seen_betas, seen_transl).joints.float().cpu())  # (T, 24, 2)
    transl = solve_translation(body, orient, pose, betas, targets, camera)
    transl[:, 2] = np.clip(transl[:, 2], 0.1, None)  # a degenerate frame must not put the body behind the camera
    return transl


def _estimate(estimator, frames, boxes, camera, source, batch_size) -> tuple[list, str]:
    from ..recovery.hmr.camerahmr import CameraHMREstimator
    from ..recovery.hmr.estimator import estimate_bodies
    from ..recovery.hmr.model import HMR2

    if isinstance(estimator, (HMR2, CameraHMREstimator)):
        name = getattr(estimator, "name", "CameraHMR" if isinstance(estimator, CameraHMREstimator) else "HMR 2.0")
        return estimate_bodies(estimator, frames, boxes, camera, source, batch_size), name
    bodies = []
    for start in range(0, len(frames), batch_size):
        indices = np.arange(start, min(start + batch_size, len(frames)))
        bodies += list(estimator(frames[indices], boxes[indices], camera, indices))
    return bodies, getattr(estimator, "name", type(estimator).__name__)


def _detections(frames, detector, boxes, masks, keypoints) -> tuple[list, str]:
    height, width = frames.shape[1:3]
    if boxes is not None:
        boxes = np.asarray(boxes, np.float32)
        if boxes.shape != (len(frames), 4):
            raise CoMoViError(f"boxes must be (T, 4) = ({len(frames)}, 4) x0, y0, x1, y1, got {boxes.shape}")
        return detections_of([None if not np.isfinite(b).all() else b for b in boxes]), "boxes given"
    if masks is not None:
        if len(masks) != len(frames):
            raise CoMoViError(f"{len(masks)} masks for {len(frames)} frames: give one mask per frame")
        return detections_of(boxes_from_masks(masks)), "masks"
    if keypoints is not None:
        if len(keypoints) != len(frames):
            raise CoMoViError(f"{len(keypoints)} keypoint sets for {len(frames)} frames: give one per frame")
        return detections_of(boxes_from_keypoints(keypoints, height, width)), "keypoints"
    if detector is None:
        raise CoMoViError("no way to find the person: give boxes, masks, keypoints or a detector")
    return [detector(frame) for frame in frames], "detector"


def _deviation_deg(raw: SMPLMotion, smoothed: SMPLMotion) -> np.ndarray:
    """(T,) mean angle (degrees) between the two motions' joint rotations."""
    frames = raw.num_frames
    q = continuous_quaternions(
        np.stack([raw.full_pose, smoothed.full_pose], 1).reshape(frames, 48, 3).astype(np.float64)
    )
    dot = np.abs((q[:, :24] * q[:, 24:]).sum(-1)).clip(0, 1)
    return np.degrees(2 * np.arccos(dot)).mean(1)


def _verdict(track: PersonTrack, confidence: np.ndarray, height: int, o: CaptureOptions) -> list[str]:
    reasons = []
    lost = float(track.lost.mean())
    if lost > o.max_lost_fraction:
        reasons.append(f"person lost in {lost:.0%} of frames (> {o.max_lost_fraction:.0%})")
    crowded = track.people >= 2
    if crowded.mean() > o.max_crowded_fraction:
        most = int(np.median(track.people[crowded]))
        reasons.append(f"{most} people in {crowded.mean():.0%} of frames (> {o.max_crowded_fraction:.0%})")
    heights = (track.boxes[:, 3] - track.boxes[:, 1])[track.detected | track.interpolated]
    size = float(np.median(heights)) / height if len(heights) else 0.0
    if size < o.min_box_fraction:
        reasons.append(f"person too small ({size:.0%} of the image height < {o.min_box_fraction:.0%})")
    if confidence.mean() < o.min_confidence:
        reasons.append(f"low confidence (mean {confidence.mean():.2f} < {o.min_confidence:.2f})")
    if track.interpolated.any() and not reasons:
        reasons.append(f"warning: person box interpolated in {int(track.interpolated.sum())} frames")
    return reasons


def capture_motion(
    frames: torch.Tensor,
    fps: float,
    *,
    estimator,
    body,
    detector=None,
    boxes=None,
    masks=None,
    keypoints=None,
    options: CaptureOptions = CaptureOptions(),  # noqa: B008 (frozen: never mutated)
    camera: PinholeCamera | None = None,
) -> CaptureResult:
    """frames (T, H, W, 3) RGB in [0, 1] at ``fps`` -> the motion of the person in them (the module's steps).

    estimator: ``recovery.hmr.loading.load_estimator``'s result (``HMR2`` or ``CameraHMREstimator``, which may carry
    FLNet) or any ``BatchEstimator``. body: the SMPL body model the estimator's parameters are for. The person's
    boxes come from ``boxes`` (T, 4) x0, y0, x1, y1 (NaN rows: not seen), else ``masks`` (T, H, W), else
    ``keypoints`` (T, K, 3), else ``detector`` (image (H, W, 3) -> (boxes (N, 4), scores (N,)) of the persons in it,
    e.g. ``PersonDetector.detect``). ``camera``: the clip's camera when it is known (e.g. a generated video's, which
    is its motion map's); then no focal length is estimated and the motion comes out in that camera."""
    o = options
    if not isinstance(frames, torch.Tensor) or frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) < 1:
        shape = tuple(frames.shape) if hasattr(frames, "shape") else type(frames).__name__
        raise CoMoViError(f"frames must be a (T, H, W, 3) RGB tensor in [0, 1] with T >= 1, got {shape}")
    if not (math.isfinite(fps) and fps > 0):
        raise CoMoViError(f"fps must be a positive number, got {fps}")
    seconds = {}
    clock = time.perf_counter()
    detections, box_source = _detections(frames, detector, boxes, masks, keypoints)
    link_gap = None if box_source == "detector" else len(frames)  # given boxes, masks, keypoints: one person
    track = track_person(detections, min_score=o.min_score, max_gap=o.max_gap, rule=o.rule, link_gap=link_gap)
    if not track.detected.any():
        raise CoMoViError(
            f"no person found in any of the {len(frames)} frames ({box_source}): is a person in view? Lower "
            f"min_score ({o.min_score}) or give boxes or masks"
        )
    seconds["track"], clock = time.perf_counter() - clock, time.perf_counter()
    if camera is None:
        camera, focal_source = clip_camera(estimator, frames, fov_degrees=o.fov_degrees, focal_frames=o.focal_frames)
    elif tuple(camera.image_size) != tuple(frames.shape[1:3]):
        raise CoMoViError(
            f"the camera is for {tuple(camera.image_size)} pictures but the frames are {tuple(frames.shape[1:3])} "
            "(H, W): give the camera of these frames"
        )
    else:
        focal_source = "given with the video"
    seconds["focal"], clock = time.perf_counter() - clock, time.perf_counter()
    bodies, name = _estimate(estimator, frames, track.boxes, camera, focal_source, o.batch_size)
    seconds["estimate"], clock = time.perf_counter() - clock, time.perf_counter()

    # one shape for the clip, each frame's translation solved again for it
    orient = torch.stack([b.global_orient for b in bodies]).float()
    pose = torch.stack([b.body_pose for b in bodies]).float()
    betas = torch.stack([b.betas for b in bodies]).float()
    transl = torch.stack([b.transl for b in bodies]).float()
    reliable = track.detected | track.interpolated
    shape = clip_betas(betas.numpy(), reliable, o.shape)
    transl = _placed_again(body, orient, pose, betas, transl, shape, camera)
    raw = SMPLMotion(orient.numpy(), pose.numpy(), shape, transl, fps, camera)

    # confidence: detection, track state, agreement with the neighbours
    base = np.where(track.detected, track.scores, np.where(track.interpolated, INTERPOLATED_SCORE, 0.0))
    deviation = _deviation_deg(raw, smooth_motion(raw, strength=max(o.smoothing, 1.0), confidence=base))
    scale = max(3 * float(np.median(deviation[reliable])), MIN_DEVIATION_DEG)
    confidence = np.clip(base * np.exp(-((deviation / scale) ** 2)), 0.0, 1.0)
    motion = smooth_motion(raw, strength=o.smoothing, confidence=confidence)
    seconds["smooth"], clock = time.perf_counter() - clock, time.perf_counter()
    if o.lock_feet:
        motion = lock_feet(body, motion)
    seconds["feet"] = time.perf_counter() - clock

    reasons = _verdict(track, confidence, frames.shape[1], o)
    verdict = "rejected" if any(not r.startswith("warning:") for r in reasons) else "ok"
    info = {
        "estimator": name,
        "boxes": box_source,
        "focal_source": focal_source,
        "focal_length": camera.focal_length[1],
        "shape": SHAPE_RULES[o.shape],
        "subject": track.rule,
        "seconds": seconds,
        "estimate_fps": len(frames) / max(seconds["estimate"], 1e-9),
    }
    return CaptureResult(motion, confidence.astype(np.float32), track, verdict, reasons, info)


def estimates_for_fit(
    frames: torch.Tensor,
    motion_map: torch.Tensor,
    start: SMPLMotion,
    camera: PinholeCamera,
    fps: float,
    *,
    estimator,
    body,
) -> tuple[SMPLMotion | None, str]:
    """A generated video's frames (T, H, W, 3) and motion map (T, H, W, 3), both in [0, 1] and seen by ``camera`` ->
    (the estimator's per-frame bodies of the video in ``camera`` with ``start``'s body shape, for the motion-map fit
    to start from (``recovery.fitting.fit_motion(init=...)``), or None; where the fit starts, in words).

    ``capture_motion`` with the person's boxes from the motion map's silhouette (``motion_map.decode.body_mask``: no
    detector) and the given camera (no focal length is estimated), smoothed, feet not locked (the fit locks the feet
    the map shows standing); then every frame's translation solved again for the start's shape
    (``with_body_shape``). A capture that fails or is rejected (e.g. the person lost in too many frames) is not
    used: None, and the words say why."""
    from ..motion_map.decode import body_mask

    body = copy.deepcopy(body).cpu().float()  # the caller's model may sit on the GPU; the capture poses on the CPU
    try:
        captured = capture_motion(
            frames.float().cpu(),
            fps,
            estimator=estimator,
            body=body,
            masks=body_mask(motion_map.float().cpu()),
            camera=camera,
            options=CaptureOptions(lock_feet=False),
        )
    except CoMoViError as error:
        log.warning("no per-frame estimates of the generated video (%s): the fit starts from the start pose", error)
        return None, f"the start pose (no per-frame estimates: {error})"
    name = captured.info["estimator"]
    if captured.verdict != "ok":
        why = "; ".join(captured.reasons)
        log.warning("the per-frame estimates by %s were rejected (%s): the fit starts from the start pose", name, why)
        return None, f"the start pose (the per-frame estimates by {name} were rejected: {why})"
    return with_body_shape(body, captured.motion, start.betas), f"per-frame estimates of the video by {name}"


DEMO_SEED = 0  # the tiny demo estimator's weights: the same random network on every run
DEMO_NAME = "tiny demo HMR 2.0 (random weights: the motion is noise)"


def demo_estimator():
    """A tiny HMR 2.0 (``PRESETS["tiny"]``) with random weights from ``DEMO_SEED``, built in memory: it needs no file
    and shows the plumbing of a capture in seconds on a CPU. Its bodies are noise, not estimates."""
    from ..recovery.hmr.config import PRESETS
    from ..recovery.hmr.model import HMR2

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(DEMO_SEED)
        model = HMR2(PRESETS["tiny"]).eval()
    model.name = DEMO_NAME  # what a capture says its estimator was
    return model


def graph_estimator(estimator_path=None, focal_net="auto"):
    """The estimator a graph names: None -> the tiny demo (``demo_estimator``, random weights), else the HMR 2.0 or
    CameraHMR file, kept loaded while it is unchanged (``recovery.estimate.cached_estimator``; ``focal_net``:
    CameraHMR's FLNet file, "auto" or None)."""
    if estimator_path is None:
        return demo_estimator()
    from ..recovery.estimate import cached_estimator

    return cached_estimator(estimator_path, focal_net)


def capture_from_graph(
    body,
    images: torch.Tensor,
    fps: float,
    *,
    estimator_path=None,
    focal_net="auto",
    masks=None,
    allow_download: bool = False,
    smoothing: float = 1.0,
) -> CaptureResult:
    """What a graph gives (IMAGE (T, H, W, C) in [0, 1] from a video loader, its frame rate, an estimator file,
    a MASK (T, H, W) or (1, H, W) of the person) -> ``capture_motion``'s result.

    ``estimator_path`` None: the tiny demo estimator (``demo_estimator``, random weights); without a mask the whole
    frame is then the person's box, so the demo needs no detector. With an HMR 2.0 or CameraHMR file the loaded
    estimator is kept while the file is unchanged (``recovery.estimate.cached_estimator``; ``focal_net``: CameraHMR's
    FLNet file, "auto" or None) and, without a mask, the RT-DETR person detector finds every person in each frame
    (from the local cache; fetched only with ``allow_download``). ``smoothing``: ``CaptureOptions.smoothing``."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[-1] < 3:
        shape = tuple(images.shape) if hasattr(images, "shape") else type(images).__name__
        raise CoMoViError(f"the video must be an IMAGE batch (T, H, W, 3) from a video loader, got {shape}")
    if len(images) < 2:
        raise CoMoViError(
            f"the video has {len(images)} frame(s): a motion needs at least 2; load more frames "
            "(e.g. raise frame_load_cap in the video loader)"
        )
    if not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
        raise CoMoViError(f"fps must be the video's frame rate, a positive number, got {fps}: set it (e.g. 16 or 30)")
    if not 0.0 <= smoothing <= 3.0:
        raise CoMoViError(f"smoothing must be in 0..3 (0 off, 1 default), got {smoothing}")
    frames = images[..., :3].float().cpu()
    if masks is not None:
        masks = torch.as_tensor(masks).float().cpu()
        masks = masks[None] if masks.ndim == 2 else masks
        masks = masks.expand(len(frames), -1, -1) if masks.ndim == 3 and len(masks) == 1 else masks
        if tuple(masks.shape) != tuple(frames.shape[:3]):
            raise CoMoViError(
                f"the mask is {tuple(masks.shape)} but the video is {tuple(frames.shape[:3])} (T, H, W): give one mask "
                "per frame (or one for all) at the video's size"
            )
    body = copy.deepcopy(body).cpu().float()  # the graph's model may sit on the GPU; the capture poses on the CPU
    boxes = detector = None
    estimator = graph_estimator(estimator_path, focal_net)
    if estimator_path is None:
        if masks is None:
            height, width = frames.shape[1:3]
            boxes = np.tile(np.array([0, 0, width, height], np.float32), (len(frames), 1))
    else:
        from ..recovery.estimate import cached_detector

        if masks is None:
            detector = functools.partial(cached_detector(allow_download).detect, min_score=CaptureOptions.min_score)
    options = CaptureOptions(smoothing=smoothing)
    result = capture_motion(
        frames, fps, estimator=estimator, body=body, detector=detector, boxes=boxes, masks=masks, options=options
    )
    if estimator_path is None:
        result.info["boxes"] = result.info["boxes"] if boxes is None else "the whole frame (the demo needs no detector)"
    return result
