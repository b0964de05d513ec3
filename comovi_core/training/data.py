"""Training clips: a folder layout, and a synthetic set for CPU smoke runs.

A dataset folder holds one sub-folder per clip::

    <clip>/rgb.mp4          the video (H, W = the training size; at least --frames frames)
    <clip>/motion_map.mp4   its motion-map video (python -m comovi_core.motion_map), same size
    <clip>/motion.npz       SMPL per frame (comovi_core.body.motion_file), for the 3D head's loss
    <clip>/caption.txt      the prompt

``check_clips`` reads only headers (frame counts and sizes from the mp4 packets, the small motion arrays), so all
clips are checked before anything is decoded or trained: rgb.mp4 at the training size with at least --frames
frames, motion_map.mp4 of the same size and length, motion.npz (optional) with one pose per video frame. Every
problem is reported at once, naming the clip and the fix.

``synthetic_clips`` makes clips in memory from the stand-in mannequin (NOT SMPL): motion maps
rendered from randomly varied demo motions, and as "video" a grey silhouette of the same body.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..body.mannequin import demo_motion
from ..body.motion_file import SMPLMotion, load_motion, save_motion
from ..body.rotations import axis_angle_to_matrix, matrix_to_axis_angle
from ..body.smpl import BodyModel
from ..errors import CoMoViError, TrainingDataError
from ..files.video import mp4_writer, probe_video, read_video, to_uint8
from ..motion_map.render import render_motion


@dataclass
class Clip:
    rgb: torch.Tensor  # (F, H, W, 3) in [0, 1]
    motion_map: torch.Tensor  # (F, H, W, 3) in [0, 1]
    motion: SMPLMotion | None  # SMPL per frame (F frames), None if the clip has none
    caption: str


@dataclass
class Sample:
    """One micro-batch's data: latents of both videos, SMPL targets (or None) and the prompt's embedding."""

    x0_rgb: torch.Tensor  # (1, C, f, h, w) normalised latents
    x0_motion: torch.Tensor  # (1, C, f, h, w)
    motion: object | None  # SMPL targets: global_orient, body_pose, betas per frame
    context: torch.Tensor  # (1, text_len, D)


def clip_problems(clip_dir: Path, frames: int, height: int | None = None, width: int | None = None) -> list[str]:
    """What is wrong with one clip folder (headers only), one line per problem naming the fix; [] when usable."""
    missing = [n for n in ("rgb.mp4", "motion_map.mp4", "caption.txt") if not (clip_dir / n).is_file()]
    if missing:
        return [f"{clip_dir}: missing {missing}; see comovi_core.training.data for the layout"]
    try:
        n_rgb, *rgb_size = probe_video(clip_dir / "rgb.mp4")
        n_map, *map_size = probe_video(clip_dir / "motion_map.mp4")
        motion = load_motion(clip_dir / "motion.npz") if (clip_dir / "motion.npz").is_file() else None
    except CoMoViError as exc:
        return [str(exc)]
    problems = []

    def size(hw):
        return f"{hw[0]}x{hw[1]}"

    if height is not None and rgb_size != [height, width]:
        problems.append(
            f"{clip_dir}: rgb.mp4 is {size(rgb_size)} (HxW) but training runs at {height}x{width} "
            f"(--height/--width): resize and crop the clip to {height}x{width}, or train at its size"
        )
    if map_size != rgb_size:
        problems.append(
            f"{clip_dir}: motion_map.mp4 is {size(map_size)} but rgb.mp4 is {size(rgb_size)}: render the "
            "motion map at the video's size (python -m comovi_core.motion_map)"
        )
    if n_rgb < frames:
        problems.append(
            f"{clip_dir}: rgb.mp4 has {n_rgb} frames, fewer than --frames {frames}: lower --frames "
            "(4k+1) or leave this clip out"
        )
    if n_map != n_rgb:
        problems.append(
            f"{clip_dir}: motion_map.mp4 has {n_map} frames but rgb.mp4 has {n_rgb}: they must match frame "
            "for frame; render the motion map again from the whole clip"
        )
    if motion is not None and motion.num_frames != n_rgb:
        problems.append(
            f"{clip_dir}: motion.npz has {motion.num_frames} poses but rgb.mp4 has {n_rgb} frames: write "
            "one SMPL pose per video frame, or delete motion.npz to train this clip without the SMPL loss"
        )
    return problems


def check_clips(folder: str | Path, frames: int, height: int | None = None, width: int | None = None) -> list[Path]:
    """The clip folders of ``folder``, all checked (headers only); raises TrainingDataError listing every bad clip."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CoMoViError(f"--data {folder} is not a folder: give the dataset folder (one sub-folder per clip)")
    clip_dirs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not clip_dirs:
        raise CoMoViError(f"{folder}: no clip folders found")
    problems = [line for clip_dir in clip_dirs for line in clip_problems(clip_dir, frames, height, width)]
    if problems:
        shown = "\n  ".join(problems[:20]) + (f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else "")
        raise TrainingDataError(
            f"{len(problems)} problem(s) in the training clips of {folder}, found before training; "
            f"fix or remove these clips:\n  {shown}"
        )
    return clip_dirs


def load_clip(clip_dir: Path, frames: int) -> Clip:
    """Decode the first ``frames`` frames of a (checked) clip folder."""

    def to_t(v):
        return torch.from_numpy(v.astype(np.float32) / 255)

    rgb, maps = read_video(clip_dir / "rgb.mp4", frames), read_video(clip_dir / "motion_map.mp4", frames)
    motion = load_motion(clip_dir / "motion.npz") if (clip_dir / "motion.npz").is_file() else None
    return Clip(to_t(rgb), to_t(maps), motion, (clip_dir / "caption.txt").read_text().strip())


def load_clips(folder: str | Path, frames: int, height: int | None = None, width: int | None = None) -> list[Clip]:
    """Check every clip (``check_clips``), then decode the first ``frames`` frames of each (all held in memory:
    for large sets prepare a cache, ``comovi_core.training.prepare``)."""
    return [load_clip(clip_dir, frames) for clip_dir in check_clips(folder, frames, height, width)]


def write_clip(folder: str | Path, clip: Clip, fps: float = 16) -> Path:
    """Write ``clip`` as a clip folder of the dataset layout (mp4s, caption, motion.npz when it has SMPL)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, frames in (("rgb.mp4", clip.rgb), ("motion_map.mp4", clip.motion_map)):
        with mp4_writer(folder / name, frames.shape[1], frames.shape[2], fps) as send:
            send(to_uint8(frames))
    (folder / "caption.txt").write_text(clip.caption + "\n")
    if clip.motion is not None:
        save_motion(folder / "motion.npz", clip.motion)
    return folder


def synthetic_clips(body: BodyModel, count: int, frames: int, height: int, width: int, seed: int = 0) -> list[Clip]:
    """``count`` clips of the mannequin with varied phase, turn and distance."""
    rng = np.random.default_rng(seed)
    clips = []
    for i in range(count):
        motion = demo_motion(num_frames=frames + int(rng.integers(0, 8)), height=height, width=width)
        start = int(rng.integers(0, motion.num_frames - frames + 1))
        turn = axis_angle_to_matrix(torch.tensor([0.0, rng.uniform(-0.6, 0.6), 0.0]))  # about the body's up axis
        orient = matrix_to_axis_angle(
            axis_angle_to_matrix(torch.from_numpy(motion.global_orient[start : start + frames])) @ turn
        )
        motion = SMPLMotion(
            orient.numpy(),
            motion.body_pose[start : start + frames],
            motion.betas,
            motion.transl[start : start + frames] * np.float32([1, 1, rng.uniform(0.9, 1.2)]),
            motion.fps,
            motion.camera,
        )
        maps = render_motion(body, motion, backend="torch")
        rgb = torch.where(maps.mask[..., None], torch.tensor(0.45) + 0.1 * maps.images, torch.ones(()))
        clips.append(Clip(rgb, maps.images, motion, ["a person waves", "a person dances", "a person squats"][i % 3]))
    return clips


class ClipData:
    """Clips held in memory (--data, --synthetic) as one shard: each read encodes both videos with the VAE; the
    prompts are encoded once here (and the empty one for --text-dropout)."""

    def __init__(self, clips: list[Clip], vae, text_encoder, empty_prompt: bool):
        self.clips, self.vae, self.sizes = clips, vae, [len(clips)]
        captions = {c.caption for c in clips} | {""}  # the empty prompt: --text-dropout, validation's CFG
        with torch.no_grad():
            self.contexts = {caption: text_encoder([caption]) for caption in captions}

    def read(self, shard: int, item: int, device):
        from .step import encode_clip

        clip = self.clips[item]
        return Sample(*encode_clip(self.vae, clip, device), clip.motion, self.contexts[clip.caption].to(device))

    def empty_context(self, device) -> torch.Tensor:
        return self.contexts[""].to(device)

    def close(self) -> None:
        pass
