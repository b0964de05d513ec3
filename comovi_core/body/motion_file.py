"""The canonical SMPL motion file, ``motion.npz`` (format ``comovi.smpl_motion``, version 1).

A plain ``.npz`` (no pickles) with smplx names; ``T`` frames:

    format_version   ()      int, 1
    global_orient    (T, 3)  axis-angle of the root, in the OpenCV camera frame
    body_pose        (T, 69) axis-angle of the 23 body joints (SMPL joint order)
    betas            (10,)   shape, shared by all frames
    transl           (T, 3)  metres; camera-space vertices = SMPL(global_orient, body_pose, betas) + transl
    fps              ()      frames per second
    focal_length     (2,)    (fx, fy) pixels          } pinhole camera, OpenCV convention,
    principal_point  (2,)    (cx, cy) pixels          } pixel centres at (c + 0.5, r + 0.5)
    image_size       (2,)    (H, W) pixels            }
    gender           ()      optional str: neutral | male | female
    foot_contact     (T, 2)  optional bool: the left and the right foot stand still since an earlier frame
                             (found by the fit where the motion map shows it: ``comovi_core.recovery.contact``)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import CoMoViError
from ..files.atomic import atomic_path, check_writable_file
from .camera import PinholeCamera

FORMAT_VERSION = 1


@dataclass
class SMPLMotion:
    global_orient: np.ndarray  # (T, 3) axis-angle, camera frame
    body_pose: np.ndarray  # (T, 69) axis-angle
    betas: np.ndarray  # (10,)
    transl: np.ndarray  # (T, 3) metres, camera space
    fps: float  # frames per second
    camera: PinholeCamera  # intrinsics and image size
    gender: str = "neutral"  # which SMPL model the parameters are for
    foot_contact: np.ndarray | None = None  # (T, 2) bool, left and right foot planted; None: not known

    def __post_init__(self) -> None:
        self.global_orient = _check(self.global_orient, "global_orient", (None, 3))
        t = self.global_orient.shape[0]
        if t < 1:
            raise CoMoViError("a motion needs at least one frame")
        self.body_pose = _check(self.body_pose, "body_pose", (t, 69))
        self.betas = _check(self.betas, "betas", (10,))
        self.transl = _check(self.transl, "transl", (t, 3))
        if self.foot_contact is not None:
            self.foot_contact = np.asarray(self.foot_contact)
            if self.foot_contact.shape != (t, 2) or self.foot_contact.dtype != np.bool_:
                raise CoMoViError(
                    f"'foot_contact' must be a (T, 2) = ({t}, 2) bool array (left, right foot planted), got "
                    f"{self.foot_contact.dtype} {self.foot_contact.shape}"
                )
        if not np.isfinite(self.fps) or self.fps <= 0:
            raise CoMoViError(f"fps must be a positive number, got {self.fps}")
        self.fps = float(self.fps)
        if np.any(self.transl[:, 2] <= 0):
            bad = int(np.argmax(self.transl[:, 2] <= 0))
            raise CoMoViError(
                f"transl z must be > 0 (the body in front of the camera); frame {bad} has z = {self.transl[bad, 2]:.3f}"
            )

    @property
    def full_pose(self) -> np.ndarray:
        """(T, 72) axis-angle of all 24 SMPL joints: the root (global_orient) then the 23 body joints."""
        return np.concatenate([np.asarray(self.global_orient), np.asarray(self.body_pose)], axis=-1)

    @property
    def num_frames(self) -> int:
        return self.global_orient.shape[0]

    def frame(self, index: int) -> SMPLMotion:
        """A one-frame motion (negative indices count from the end: -1 is the last frame)."""
        if not -self.num_frames <= index < self.num_frames:
            raise CoMoViError(f"frame {index} asked for, but the motion has {self.num_frames} frames")
        pick = slice(index, index + 1 if index != -1 else None)
        return SMPLMotion(
            self.global_orient[pick],
            self.body_pose[pick],
            self.betas,
            self.transl[pick],
            self.fps,
            self.camera,
            self.gender,
            None if self.foot_contact is None else self.foot_contact[pick],
        )


def concat_motions(first: SMPLMotion, second: SMPLMotion, skip_shared_frame: bool = True) -> SMPLMotion:
    """``first`` then ``second`` (shape, camera and fps of ``first``). A clip generated from the last frame of the
    previous one starts with that frame again: ``skip_shared_frame`` drops it."""
    if first.camera.image_size != second.camera.image_size:
        raise CoMoViError(
            f"the motions were made for different image sizes: {first.camera.image_size} vs {second.camera.image_size}"
        )
    start = 1 if skip_shared_frame and second.num_frames > 1 else 0

    def join(a, b):
        return np.concatenate([a, b[start:]])

    contact = None  # known only when both halves know it
    if first.foot_contact is not None and second.foot_contact is not None:
        contact = join(first.foot_contact, second.foot_contact)

    return SMPLMotion(
        join(first.global_orient, second.global_orient),
        join(first.body_pose, second.body_pose),
        first.betas,
        join(first.transl, second.transl),
        first.fps,
        first.camera,
        first.gender,
        contact,
    )


def _check(value, name: str, shape: tuple) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float32)
    if arr.ndim != len(shape) or any(s is not None and s != a for s, a in zip(shape, arr.shape)):
        want = "(" + ", ".join("T" if s is None else str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"
        raise CoMoViError(f"'{name}' must have shape {want}, got {arr.shape}")
    if not np.isfinite(arr).all():
        idx = np.argwhere(~np.isfinite(arr))[0]
        raise CoMoViError(f"'{name}' contains NaN or infinite values (first at index {tuple(int(i) for i in idx)})")
    return arr


def check_motion_target(path: str | Path, what: str = "motion file") -> None:
    """Refuse, before any work, a motion file target that is not ``.npz`` or cannot be written there."""
    path = Path(path)
    check_writable_file(path, what)
    if path.suffix != ".npz":
        raise CoMoViError(f"the {what} must be a .npz motion file, got {path.name}")


def save_motion(path: str | Path, motion: SMPLMotion) -> Path:
    """Write ``motion`` atomically as a ``.npz``; returns the path."""
    path = Path(path)
    check_motion_target(path)
    cam = motion.camera
    optional = {} if motion.foot_contact is None else {"foot_contact": motion.foot_contact}
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(
                fh,
                **optional,
                format_version=np.int64(FORMAT_VERSION),
                global_orient=motion.global_orient,
                body_pose=motion.body_pose,
                betas=motion.betas,
                transl=motion.transl,
                fps=np.float64(motion.fps),
                focal_length=np.asarray(cam.focal_length, np.float64),
                principal_point=np.asarray(cam.principal_point, np.float64),
                image_size=np.asarray(cam.image_size, np.int64),
                gender=np.str_(motion.gender),
            )
    return path


REQUIRED_KEYS = (
    "format_version",
    "global_orient",
    "body_pose",
    "betas",
    "transl",
    "fps",
    "focal_length",
    "principal_point",
    "image_size",
)


def load_motion(path: str | Path) -> SMPLMotion:
    """Read and validate a motion file; every problem is reported with the key and the fix."""
    path = Path(path)
    if not path.is_file():
        raise CoMoViError(f"motion file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as exc:
        raise CoMoViError(f"{path} is not a readable .npz motion file ({exc})") from exc
    missing = [k for k in REQUIRED_KEYS if k not in arrays]
    if missing:
        raise CoMoViError(f"{path}: missing {missing}; see comovi_core.body.motion_file for the format")
    version = int(arrays["format_version"])
    if version != FORMAT_VERSION:
        raise CoMoViError(
            f"{path}: motion format version {version} is not supported (this library reads version "
            f"{FORMAT_VERSION}); update ComfyUI-CoMoVi"
        )
    try:
        camera = PinholeCamera(
            tuple(arrays["focal_length"].reshape(2)),
            tuple(arrays["principal_point"].reshape(2)),
            tuple(int(s) for s in arrays["image_size"].reshape(2)),
        )
        return SMPLMotion(
            arrays["global_orient"],
            arrays["body_pose"],
            arrays["betas"],
            arrays["transl"],
            float(arrays["fps"]),
            camera,
            str(arrays.get("gender", "neutral")),
            arrays.get("foot_contact"),
        )
    except CoMoViError as exc:
        raise CoMoViError(f"{path}: {exc}") from exc
    except ValueError as exc:
        raise CoMoViError(
            f"{path}: camera entries have the wrong size ({exc}); focal_length, principal_point and image_size "
            "hold 2 numbers each"
        ) from exc
