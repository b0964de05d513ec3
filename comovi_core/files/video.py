"""Write frame sequences as mp4 (H.264 via imageio-ffmpeg's bundled ffmpeg) or PNGs, atomically."""

from __future__ import annotations

import contextlib
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import CoMoViError
from .atomic import atomic_path, check_writable_folder

VIDEO_SIZE = re.compile(r"Stream #\S+.*?: Video: .*?\b(\d{2,5})x(\d{2,5})\b")  # (width, height) in ffmpeg's log


def to_uint8(images) -> np.ndarray:
    """(T, H, W, 3) float in [0, 1] (tensor or array) -> uint8, rounded."""
    arr = images.detach().cpu().numpy() if hasattr(images, "detach") else np.asarray(images)
    return np.clip(np.rint(arr * 255.0), 0, 255).astype(np.uint8)


def check_mp4_size(height: int, width: int) -> None:
    if height % 2 or width % 2:
        raise CoMoViError(
            f"mp4 (H.264, yuv420p) needs an even height and width, got {height}x{width}; use an even size or "
            "write PNG frames only"
        )


@contextlib.contextmanager
def mp4_writer(path: str | Path, height: int, width: int, fps: float, crf: int = 12) -> Iterator:
    """Yield ``send(frames_uint8 (N, H, W, 3))``; the mp4 appears at ``path`` only when all frames are in."""
    import imageio_ffmpeg

    path = Path(path)
    if path.suffix.lower() != ".mp4":
        raise CoMoViError(f"video output must end in .mp4, got {path.name}")
    check_mp4_size(height, width)
    with atomic_path(path) as tmp:
        gen = imageio_ffmpeg.write_frames(
            str(tmp),
            (width, height),
            fps=fps,
            codec="libx264",
            pix_fmt_out="yuv420p",
            output_params=["-crf", str(crf), "-preset", "fast"],
            macro_block_size=1,
            ffmpeg_log_level="error",
        )
        gen.send(None)

        def send(frames: np.ndarray) -> None:
            for frame in frames:
                gen.send(np.ascontiguousarray(frame))

        try:
            yield send
        finally:
            gen.close()


def write_pngs(folder: str | Path, frames: np.ndarray, first_index: int = 0) -> list[Path]:
    """Write ``frames`` (N, H, W, 3) uint8 as ``folder/000000.png`` ...; each file written atomically."""
    folder = Path(folder)
    check_writable_folder(folder, "PNG folder")
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, frame in enumerate(frames):
        target = folder / f"{first_index + i:06d}.png"
        with atomic_path(target) as tmp:
            Image.fromarray(frame).save(tmp, format="PNG")
        paths.append(target)
    return paths


def _first_video_stream(path: str | Path) -> list[str]:
    """The start of an ffmpeg command (imageio-ffmpeg's bundled binary) that reads the first video stream of
    ``path``; the caller appends the output options."""
    import imageio_ffmpeg

    return [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path), "-map", "0:v:0"]


def read_video(path: str | Path, max_frames: int | None = None) -> np.ndarray:
    """Read a video into (T, H, W, 3) uint8 RGB, at most ``max_frames`` frames (decoding stops there); one ffmpeg
    call (imageio-ffmpeg's bundled binary)."""
    cmd = [
        *_first_video_stream(path),
        *(["-frames:v", str(max_frames)] if max_frames else []),
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
        "-",
    ]
    result = subprocess.run(cmd, capture_output=True, check=False)
    stderr = result.stderr.decode(errors="replace")
    sizes = VIDEO_SIZE.findall(stderr)  # the input stream's, then the output's (after any autorotation)
    if result.returncode != 0 or not sizes or not result.stdout:
        last = stderr.strip().splitlines()[-1:] or ["no output"]
        raise CoMoViError(f"{path}: not a readable video ({last[0]}); re-encode it as H.264 mp4")
    width, height = (int(v) for v in sizes[-1])
    return np.frombuffer(result.stdout, np.uint8).reshape(-1, height, width, 3).copy()  # writable


def probe_video(path: str | Path) -> tuple[int, int, int]:
    """(frames, height, width) of a video's first video stream from its packets, without decoding a frame."""
    cmd = [
        *_first_video_stream(path),
        "-c",
        "copy",
        "-f",
        "null",
        "-",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, errors="replace", check=False)
    size = VIDEO_SIZE.search(result.stderr)
    counts = re.findall(r"frame=\s*(\d+)", result.stderr)
    if result.returncode != 0 or size is None or not counts:
        last = result.stderr.strip().splitlines()[-1:] or ["no output"]
        raise CoMoViError(f"{path}: not a readable video ({last[0]}); re-encode it as H.264 mp4")
    return int(counts[-1]), int(size.group(2)), int(size.group(1))
