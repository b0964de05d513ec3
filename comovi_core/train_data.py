"""Training clips: a folder layout, and a synthetic set for CPU smoke runs.

A dataset folder holds one sub-folder per clip::

    <clip>/rgb.mp4          the video (H, W = the training size; at least --frames frames)
    <clip>/motion_map.mp4   its motion-map video (python -m comovi_core.motion_map), same size
    <clip>/motion.npz       SMPL per frame (comovi_core.body.motion_file), for the 3D head's loss
    <clip>/caption.txt      the prompt

``synthetic_clips`` makes clips in memory from the stand-in mannequin (NOT SMPL): motion maps
rendered from randomly varied demo motions, and as "video" a grey silhouette of the same body.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .body.mannequin import demo_motion
from .body.motion_file import SMPLMotion, load_motion
from .body.rotations import axis_angle_to_matrix, matrix_to_axis_angle
from .body.smpl import BodyModel, camera_vertices
from .errors import CoMoViError
from .motion_map.render import render_motion_map
from .video import read_video


@dataclass
class Clip:
    rgb: torch.Tensor  # (F, H, W, 3) in [0, 1]
    motion_map: torch.Tensor  # (F, H, W, 3) in [0, 1]
    motion: SMPLMotion | None  # SMPL per frame (F frames), None if the clip has none
    caption: str


def load_clips(folder: str | Path, frames: int) -> list[Clip]:
    folder = Path(folder)
    clips = []
    for clip_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        missing = [n for n in ("rgb.mp4", "motion_map.mp4", "caption.txt") if not (clip_dir / n).is_file()]
        if missing:
            raise CoMoViError(f"{clip_dir}: missing {missing}; see comovi_core.train_data for the layout")
        rgb, maps = read_video(clip_dir / "rgb.mp4"), read_video(clip_dir / "motion_map.mp4")
        if len(rgb) < frames or len(maps) < frames or rgb.shape[1:] != maps.shape[1:]:
            raise CoMoViError(f"{clip_dir}: needs {frames} frames of equal size in rgb.mp4 and motion_map.mp4, "
                              f"got {rgb.shape} and {maps.shape}")
        motion = load_motion(clip_dir / "motion.npz") if (clip_dir / "motion.npz").is_file() else None
        to_t = lambda v: torch.from_numpy(v[:frames].astype(np.float32) / 255)  # noqa: E731
        clips.append(Clip(to_t(rgb), to_t(maps), motion, (clip_dir / "caption.txt").read_text().strip()))
    if not clips:
        raise CoMoViError(f"{folder}: no clip folders found")
    return clips


def synthetic_clips(body: BodyModel, count: int, frames: int, height: int, width: int, seed: int = 0) -> list[Clip]:
    """``count`` clips of the mannequin with varied phase, turn and distance."""
    rng = np.random.default_rng(seed)
    clips = []
    for i in range(count):
        motion = demo_motion(num_frames=frames + int(rng.integers(0, 8)), height=height, width=width)
        start = int(rng.integers(0, motion.num_frames - frames + 1))
        turn = axis_angle_to_matrix(torch.tensor([0.0, rng.uniform(-0.6, 0.6), 0.0]))  # about the body's up axis
        orient = matrix_to_axis_angle(axis_angle_to_matrix(torch.from_numpy(motion.global_orient[start:start + frames])) @ turn)
        motion = SMPLMotion(orient.numpy(), motion.body_pose[start:start + frames],
                            motion.betas, motion.transl[start:start + frames] * np.float32([1, 1, rng.uniform(0.9, 1.2)]),
                            motion.fps, motion.camera)
        with torch.no_grad():
            verts = camera_vertices(body, motion).vertices
        maps = render_motion_map(verts, body.faces, body.part_ids, motion.camera, "comovi_v1", "torch")
        rgb = torch.where(maps.mask[..., None], torch.tensor(0.45) + 0.1 * maps.images, torch.ones(()))
        clips.append(Clip(rgb, maps.images, motion, ["a person waves", "a person dances", "a person squats"][i % 3]))
    return clips
