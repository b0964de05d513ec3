"""Temporal smoothing of a captured motion, and foot locking.

Per-frame estimates jitter: each frame's pose is a separate guess, a few degrees off at every joint and a few
centimetres off in depth, so the joints shake (a high acceleration error) though each frame looks right.
``smooth_motion`` filters every joint's rotation as a unit quaternion (signs made continuous, so q and -q, the
same rotation, never average to nothing) and the root's translation with a Whittaker smoother: the least-squares
trajectory x that minimises ``sum_t w_t |x_t - y_t|^2 + lam * sum_t |x_{t-1} - 2 x_t + x_{t+1}|^2``. It is
symmetric in time (zero phase, no lag, unlike a causal filter), keeps constant and linearly changing signals
exactly, its cutoff follows the frame rate (``lam = (fps / (2 pi cutoff))^4``: a gain of 1/2 at ``CUTOFF_HZ``), and
the weights ``w_t`` (the per-frame confidence) let a frame the estimator got wrong be outvoted by its
neighbours. Filtering Euler angles instead would break at their wrap-around and gimbal lock; a quaternion's
four numbers change smoothly with the rotation, and renormalising the filtered ones gives rotations again.

``lock_feet`` finds frames where a foot stands (still in 3D over a few frames and near the clip's lowest foot
height along the body's up direction) and moves the root so that a standing foot stays at its place: the mean
of its positions over the run it stands (``comovi_core.recovery.contact.foot_centres`` for where a foot is).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from ..body.motion_file import SMPLMotion
from ..body.smpl import camera_vertices
from ..errors import CoMoViError
from ..recovery.contact import foot_centres, foot_masks

CUTOFF_HZ = 3.0  # the smoother's half-gain frequency at strength 1; human motion is mostly slower than this
MIN_WEIGHT = 1e-3  # floor of a frame's weight: a frame of confidence 0 is carried by its neighbours


def continuous_quaternions(axis_angle: np.ndarray) -> np.ndarray:
    """(T, J, 3) axis-angle -> (T, J, 4) unit quaternions (x, y, z, w), each as close to the previous frame's as
    its sign allows (q and -q are one rotation)."""
    import roma  # on use: roma imports torch._dynamo (seconds) at import

    q = roma.rotvec_to_unitquat(torch.from_numpy(axis_angle).double()).numpy()
    flips = np.sign(np.einsum("tjc,tjc->tj", q[1:], q[:-1]))
    flips[flips == 0] = 1
    q[1:] *= np.cumprod(flips, 0)[..., None]
    return q


def _axis_angle(q: np.ndarray) -> np.ndarray:
    import roma

    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    return roma.unitquat_to_rotvec(torch.from_numpy(q)).numpy()


def whittaker(values: np.ndarray, lam: float, weights: np.ndarray | None = None) -> np.ndarray:
    """(T, ...) signals -> the weighted least-squares trajectory with a second-difference penalty ``lam``: solves
    ``(W + lam D'D) x = W y`` (pentadiagonal, symmetric positive definite) for every signal at once."""
    from scipy.linalg import solveh_banded  # on use: scipy costs ~0.4 s at ComfyUI start-up

    frames = values.shape[0]
    if frames < 3 or lam <= 0:
        return values.copy()
    w = np.ones(frames) if weights is None else np.clip(np.asarray(weights, np.float64), MIN_WEIGHT, None)
    ones = np.ones(frames - 2)
    bands = np.zeros((3, frames))  # upper form: bands[2] diagonal, [1] first, [0] second super-diagonal
    bands[2] = w + lam * np.convolve(ones, [1.0, 4.0, 1.0])
    bands[1, 1:] = lam * np.convolve(ones, [-2.0, -2.0])
    bands[0, 2:] = lam * ones
    flat = values.reshape(frames, -1).astype(np.float64)
    return solveh_banded(bands, w[:, None] * flat).reshape(values.shape)


def smoothing_lambda(fps: float, strength: float = 1.0) -> float:
    """The second-difference weight whose smoother halves a signal of ``CUTOFF_HZ / strength`` at ``fps``."""
    if strength <= 0:
        return 0.0
    return float((fps * strength / (2 * np.pi * CUTOFF_HZ)) ** 4)


def smooth_motion(motion: SMPLMotion, *, strength: float = 1.0, confidence: np.ndarray | None = None) -> SMPLMotion:
    """Zero-lag smoothing of every joint's rotation (quaternions) and of the root translation (see the module's
    docstring). ``strength`` 0 leaves the motion as it is, 1 is the default cutoff (``CUTOFF_HZ``), 2 halves it;
    ``confidence`` (T,) in [0, 1] weighs each frame's estimate (0: replaced by what its neighbours say). Shape,
    frame rate, camera and foot contacts are kept."""
    if strength < 0 or not np.isfinite(strength):
        raise CoMoViError(f"smoothing strength must be >= 0 (0: off, 1: default), got {strength}")
    frames = motion.num_frames
    if confidence is not None:
        confidence = np.asarray(confidence, np.float64).reshape(-1)
        if confidence.shape != (frames,) or not np.all((confidence >= 0) & (confidence <= 1)):
            raise CoMoViError(f"confidence must be ({frames},) values in [0, 1], got {confidence.shape}")
    lam = smoothing_lambda(motion.fps, strength)
    if lam == 0 or frames < 3:
        return dataclasses.replace(motion)
    rotations = motion.full_pose.reshape(frames, 24, 3).astype(np.float64)
    smoothed = _axis_angle(whittaker(continuous_quaternions(rotations), lam, confidence)).reshape(frames, 72)
    transl = whittaker(motion.transl.astype(np.float64), lam, confidence)
    return dataclasses.replace(motion, global_orient=smoothed[:, :3], body_pose=smoothed[:, 3:], transl=transl)


def foot_contacts(
    centres: np.ndarray, up: np.ndarray, fps: float, *, max_speed: float = 0.3, max_height: float = 0.06
) -> np.ndarray:
    """centres (T, 2, 3) of the feet in metres, ``up`` (3,) the body's up direction -> (T, 2) bool: the foot moves
    slower than ``max_speed`` m/s over the frame and its neighbours and lies within ``max_height`` metres of the
    clip's lowest foot height (its 5th percentile)."""
    frames = len(centres)
    if frames < 2:
        return np.zeros((frames, 2), bool)
    speed = np.linalg.norm(np.gradient(centres, axis=0), axis=-1) * fps  # (T, 2) m/s, central differences
    padded = np.pad(speed, ((1, 1), (0, 0)), mode="edge")
    still = np.max(np.stack([padded[:-2], padded[1:-1], padded[2:]]), 0) < max_speed
    height = centres @ up  # (T, 2)
    low = height - np.percentile(height, 5) < max_height
    return still & low


def lock_feet(
    body,
    motion: SMPLMotion,
    *,
    max_speed: float = 0.3,
    max_height: float = 0.06,
    min_frames: int = 3,
    max_shift: float = 0.1,
) -> SMPLMotion:
    """Remove foot skate: where a foot stands (``foot_contacts``, runs of at least ``min_frames``), the root moves
    so the foot stays at the mean of its positions over the run; between runs the shift changes linearly, and it
    is at most ``max_shift`` metres. Returns the motion with ``foot_contact`` (T, 2) set (left, right foot)."""
    with torch.no_grad():
        posed = camera_vertices(body, motion)
    joints = posed.joints.double().numpy()
    centres = foot_centres(posed.vertices.double(), foot_masks(body.part_ids)).numpy()  # (T, 2, 3)
    spine = (joints[:, 12] - joints[:, 0]).mean(0)  # pelvis -> neck: the body's up, in camera space
    up = spine / max(np.linalg.norm(spine), 1e-9)
    contact = foot_contacts(centres, up, motion.fps, max_speed=max_speed, max_height=max_height)
    shift = np.zeros_like(centres)  # (T, 2, 3) where each standing foot should move
    for foot in range(2):
        for start, stop in _runs(contact[:, foot]):
            if stop - start < min_frames:
                contact[start:stop, foot] = False
                continue
            run = centres[start:stop, foot]
            shift[start:stop, foot] = run.mean(0) - run
    frames = np.arange(motion.num_frames)
    standing = contact.any(1)
    if not standing.any():
        return dataclasses.replace(motion, foot_contact=contact)
    per_frame = (shift * contact[..., None]).sum(1)[standing] / contact[standing].sum(1, keepdims=True)
    offset = np.stack([np.interp(frames, frames[standing], per_frame[:, k]) for k in range(3)], -1)
    norm = np.linalg.norm(offset, axis=-1, keepdims=True)
    offset *= np.minimum(1.0, max_shift / np.maximum(norm, 1e-9))
    return dataclasses.replace(motion, transl=motion.transl + offset, foot_contact=contact)


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """(T,) bool -> [start, stop) of every run of True."""
    edges = np.diff(np.concatenate([[0], flags.astype(np.int8), [0]]))
    return list(zip(np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0]))
