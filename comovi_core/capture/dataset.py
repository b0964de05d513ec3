"""Training clips from your own videos: every video -> up to two clip folders that ``train`` and ``prepare`` read.

    python -m comovi_core.capture videos/ --out clips/ --estimator models/smpl_estimators/hmr2.safetensors \
        --body-model models/smpl --captions captions.csv

Each clip is ``--clip-seconds`` long (default 5 s), resampled to ``--fps`` (16) with a 4k+1 frame count (81), and
cropped around the person to the training size (``--height 704 --width 1280``): the largest window of the training
aspect inside the frame, moved so it holds every box of the person's track (plus ``--margin``); where the person
does not fit it grows past the frame, and the outside is padded with white. The person is never cut off. The
motion's camera follows the crop and the scale, so ``motion_map.mp4`` (rendered with the body model) lies on the
person of ``rgb.mp4``. At most ``--clips-per-video`` clips (2) are taken, one after the other from the start.

A clip is rejected, with its reasons, when the video is unreadable or too short, the person is missing or
unsure in more than ``--max-missing`` of its frames, more than one person is seen in more than ``--max-crowded`` of
them, the person is smaller than ``--min-box-fraction`` of the crop's height, or no caption is found: from
``--captions FILE.csv|.jsonl`` (video, start, caption), else the sidecar ``<video>.txt``, else the ``--captioner``
vision-language model (transformers; loaded only when a clip needs it).

Everything is resumable: a clip folder appears whole (written beside it, then renamed), finished clips and
rejected ones (unless ``--retry-rejected``) are skipped when the command runs again, and ``report.jsonl`` (one line
per clip: kept, rejected or failed, with reasons, frames, confidence and timings) and ``summary.json`` (counts by
reason) are rewritten atomically after every video. "failed" (a tool could not run: a corrupt estimator, an
unavailable captioner) is retried on every run, and the command then exits with status 2.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import functools
import hashlib
import json
import logging
import math
import re
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ..errors import CoMoViError, run_cli
from ..files.atomic import atomic_path, check_writable_folder, staged_folder

log = logging.getLogger("comovi_core.capture")

_VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v")
_CLIP_FILES = ("rgb.mp4", "motion_map.mp4", "motion.npz", "caption.txt", "capture.json")  # capture.json last
_REPORT, _SUMMARY, _SETTINGS = "report.jsonl", "summary.json", "capture.json"
DEFAULT_CAPTION_PROMPT = (
    "Describe in one sentence what the person in this video does, their appearance and the setting. "
    "Start with 'A person' or 'A man' or 'A woman'."
)
_PAD = 1.0  # white, as the start image is padded for generation (inference.inputs.pad_to_aspect)
_MAX_CAPTURE_SIDE = 1280  # frames larger than this are scaled down for the capture (its networks see 256-640 px)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m comovi_core.capture", description=__doc__.split("\n\n")[0])
    p.add_argument("inputs", nargs="+", type=Path, help="videos, or folders searched for videos (recursively)")
    p.add_argument("--out", type=Path, required=True, help="dataset folder to write (or to continue): one per clip")
    p.add_argument("--estimator", type=Path, help="HMR 2.0 or CameraHMR checkpoint, as `estimate --estimator`")
    p.add_argument(
        "--focal-net",
        default="auto",
        help="CameraHMR only: FLNet file; 'auto' finds it next to --estimator, 'none' uses --fov",
    )
    p.add_argument(
        "--detector",
        help="RT-DETR folder or Hugging Face repo for the person boxes (default PekingU/rtdetr_r50vd, local cache)",
    )
    p.add_argument("--allow-download", action="store_true", help="allow downloading the detector / captioner")
    p.add_argument(
        "--body-model", type=Path, help="SMPL file or folder; default: the stand-in mannequin (NOT SMPL, tests only)"
    )
    p.add_argument("--clip-seconds", type=float, default=5.0, help="length of a clip in seconds (default 5)")
    p.add_argument("--clips-per-video", type=int, default=2, help="at most this many clips per video (default 2)")
    p.add_argument("--fps", type=float, default=16.0, help="training frame rate the clips are resampled to")
    p.add_argument("--height", type=int, default=704, help="training height, a multiple of 32 (default 704)")
    p.add_argument("--width", type=int, default=1280, help="training width, a multiple of 32 (default 1280)")
    p.add_argument(
        "--margin", type=float, default=0.1, help="room around the person, as a fraction of their box (default 0.1)"
    )
    p.add_argument(
        "--max-missing",
        type=float,
        default=0.2,
        help="reject a clip whose person is lost or below --min-confidence in more than this fraction of frames",
    )
    p.add_argument(
        "--min-confidence", type=float, default=0.5, help="a frame's capture confidence below this is unsure"
    )
    p.add_argument(
        "--max-crowded", type=float, default=0.1, help="reject a clip with several people in more than this fraction"
    )
    p.add_argument(
        "--min-box-fraction",
        type=float,
        default=0.1,
        help="reject a clip whose person is shorter than this fraction of the crop's height (median over frames)",
    )
    p.add_argument("--min-score", type=float, default=0.5, help="detector score for a person box")
    p.add_argument("--max-gap", type=int, default=8, help="the track bridges up to this many frames without a box")
    p.add_argument("--smoothing", type=float, default=1.0, help="temporal smoothing strength (0: none)")
    p.add_argument(
        "--shape", default="robust_mean", choices=("robust_mean", "first_frame"), help="one body shape per clip from"
    )
    p.add_argument("--no-foot-lock", action="store_true", help="do not lock planted feet")
    p.add_argument("--fov", type=float, default=50.0, help="vertical field of view, degrees, when not estimated")
    p.add_argument("--batch-size", type=int, default=16, help="frames per estimator batch")
    p.add_argument("--captions", type=Path, help="CSV or JSONL with video, start (seconds; empty: any), caption")
    p.add_argument("--captioner", help="vision-language model id or folder (e.g. Qwen2.5-VL) through transformers")
    p.add_argument("--caption-prompt", default=DEFAULT_CAPTION_PROMPT, help="what the captioner is asked")
    p.add_argument("--retry-rejected", action="store_true", help="process again the clips rejected by earlier runs")
    p.add_argument("--workers", type=int, default=1, help="videos at once (threads sharing the networks); 1 = in turn")
    p.add_argument("--device", help="where the networks run; default cuda if available, else cpu")
    p.add_argument("--renderer", default="auto", help="motion-map renderer: auto, torch or pyrender")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p.parse_args(argv)


# ---------------------------------------------------------------------------------------------------------- geometry


def clip_frame_count(seconds: float, fps: float) -> int:
    """Frames of a ``seconds``-long clip at ``fps``, down to 4k+1 (5 s at 16 fps -> 81)."""
    return int(round(seconds * fps)) // 4 * 4 + 1


def source_indices(start: float, frames: int, fps: float, source_fps: float) -> np.ndarray:
    """Indices of the source frames nearest to ``start + j / fps`` for j < ``frames``."""
    times = start + np.arange(frames) / fps
    return np.floor(times * source_fps + 0.5 + 1e-6).astype(np.int64)


@dataclasses.dataclass(frozen=True)
class CropWindow:
    top: int  # first row in the source frame (negative: padded above)
    left: int  # first column (negative: padded on the left)
    height: int
    width: int


def clip_window(boxes: np.ndarray, frame_size: tuple[int, int], out_size: tuple[int, int], margin: float) -> CropWindow:
    """The window of aspect ``out_size`` (H, W) that holds every box (N, 4) x0 y0 x1 y1 grown by ``margin`` (a fraction
    of the boxes' union, clipped to the frame): the largest one inside the frame of ``frame_size`` (H, W), moved onto
    the person; larger than the frame (centred, padded) only where the person with the margin does not fit."""
    fh, fw = frame_size
    aspect = out_size[1] / out_size[0]
    x0, y0 = boxes[:, 0].min(), boxes[:, 1].min()
    x1, y1 = boxes[:, 2].max(), boxes[:, 3].max()
    room = margin * max(x1 - x0, y1 - y0)
    x0, y0, x1, y1 = max(x0 - room, 0.0), max(y0 - room, 0.0), min(x1 + room, fw), min(y1 + room, fh)
    inside, need = min(fh, fw / aspect), max(y1 - y0, (x1 - x0) / aspect)
    if need <= inside:  # the largest window inside the frame
        height = max(int(inside), math.ceil(y1 - y0 - 1e-6))
        width = max(min(fw, round(height * aspect)), math.ceil(x1 - x0 - 1e-6))
    else:  # grown past the frame to hold the person
        height = math.ceil(need - 1e-6)
        width = max(round(height * aspect), math.ceil(x1 - x0 - 1e-6))

    def place(size, lo, hi, frame):
        start = (lo + hi - size) / 2 if size <= frame else (frame - size) / 2
        start = min(max(start, 0), frame - size) if size <= frame else start
        return int(round(min(max(start, hi - size), lo)))  # the person wins over the frame

    return CropWindow(place(height, y0, y1, fh), place(width, x0, x1, fw), height, width)


def crop_frames(frames: np.ndarray, window: CropWindow, out_size: tuple[int, int], chunk: int = 16) -> np.ndarray:
    """(T, H, W, 3) uint8 -> the window, padded with white outside the frame, resized to ``out_size``: uint8."""
    import torch.nn.functional as F

    fh, fw = frames.shape[1:3]
    pad_top, pad_left = max(0, -window.top), max(0, -window.left)
    pad_bottom = max(0, window.top + window.height - fh)
    pad_right = max(0, window.left + window.width - fw)
    rows = slice(window.top + pad_top, window.top + pad_top + window.height)
    cols = slice(window.left + pad_left, window.left + pad_left + window.width)
    out = []
    for start in range(0, len(frames), chunk):
        x = torch.from_numpy(frames[start : start + chunk]).permute(0, 3, 1, 2).float() / 255  # (t, 3, H, W)
        x = F.pad(x, (pad_left, pad_right, pad_top, pad_bottom), value=_PAD)[:, :, rows, cols]
        x = F.interpolate(x, size=out_size, mode="bilinear", align_corners=False, antialias=True)
        out.append((x.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy())
    return np.concatenate(out)


def check_training_size(height: int, width: int, frames: int) -> None:
    """The clip size rules of training (H, W multiples of 32; 4k+1 frames, at least 5)."""
    if height % 32 or width % 32 or height < 32 or width < 32:
        raise CoMoViError(
            f"--height and --width must be positive multiples of 32 (the training size), got {height}x{width}; "
            "e.g. 704x1280 or 480x832"
        )
    if frames < 5:
        raise CoMoViError(
            f"--clip-seconds x --fps gives {frames} frames; a clip needs at least 5 (4k+1): make the clips longer"
        )


# ---------------------------------------------------------------------------------------------------------- captions


class CaptionTable:
    """Captions from ``--captions`` (CSV with a header, or JSONL): rows of video, start (seconds; empty: every
    clip of the video) and caption. ``video`` is a path (absolute, or relative to the table) or a file name."""

    def __init__(self, path: Path):
        self.by_path: dict[str, list[tuple[float | None, str]]] = {}
        self.by_name: dict[str, list[tuple[float | None, str]]] = {}
        for line, row in self._rows(path):
            try:
                video, caption = str(row["video"]).strip(), str(row["caption"]).strip()
                start = row.get("start")
                start = None if start in (None, "") else float(start)
            except (KeyError, TypeError, ValueError) as exc:
                raise CoMoViError(
                    f"--captions {path} line {line}: needs video, start (seconds, may be empty) and caption ({exc})"
                ) from None
            if video and caption:
                resolved = str((path.parent / video).resolve())
                self.by_path.setdefault(resolved, []).append((start, caption))
                self.by_name.setdefault(Path(video).name, []).append((start, caption))

    @staticmethod
    def _rows(path: Path):
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise CoMoViError(f"--captions {path} cannot be read ({exc}): give a CSV or JSONL file") from None
        if path.suffix.lower() == ".jsonl":
            for n, line in enumerate(text.splitlines(), 1):
                if line.strip():
                    try:
                        row = json.loads(line)
                    except ValueError as exc:
                        raise CoMoViError(f"--captions {path} line {n} is not JSON ({exc})") from None
                    yield n, row if isinstance(row, dict) else {}
        elif path.suffix.lower() == ".csv":
            for n, row in enumerate(csv.DictReader(text.splitlines()), 2):
                yield n, row
        else:
            raise CoMoViError(f"--captions {path}: expected a .csv or .jsonl file")

    def find(self, video: Path, start: float, tolerance: float) -> str | None:
        rows = self.by_path.get(str(video.resolve())) or self.by_name.get(video.name) or []
        exact = [c for s, c in rows if s is not None and abs(s - start) <= tolerance]
        return (exact or [c for s, c in rows if s is None] or [None])[0]


def sidecar_caption(video: Path) -> str | None:
    """The caption in ``clip.txt`` or ``clip.mp4.txt`` beside the video ``clip.mp4``."""
    for path in (video.with_suffix(".txt"), video.with_name(video.name + ".txt")):
        if path.is_file():
            text = path.read_text(encoding="utf-8-sig", errors="replace").strip()
            if text:
                return text
    return None


class VLMCaptioner:
    """A vision-language model (e.g. Qwen2.5-VL) through transformers, asked about a few frames of the clip."""

    def __init__(self, source: str, prompt: str, device: str, allow_download: bool = False, images: int = 4):
        try:
            import transformers
        except ImportError:
            raise CoMoViError("--captioner needs transformers: pip install transformers") from None
        model_class = getattr(transformers, "AutoModelForImageTextToText", None)
        if model_class is None:
            raise CoMoViError(
                f"--captioner: transformers {transformers.__version__} has no AutoModelForImageTextToText for "
                "vision-language models such as Qwen2.5-VL: pip install -U transformers"
            )
        try:
            self.processor = transformers.AutoProcessor.from_pretrained(source, local_files_only=not allow_download)
            self.model = model_class.from_pretrained(source, local_files_only=not allow_download, torch_dtype="auto")
        except (OSError, ValueError, KeyError) as exc:
            raise CoMoViError(
                f"--captioner {source} cannot be loaded ({exc.__class__.__name__}: {str(exc)[:200]}): give a local "
                "folder of a vision-language model (e.g. Qwen/Qwen2.5-VL-7B-Instruct, downloaded with "
                "huggingface-cli), add --allow-download, or give captions with --captions / <video>.txt"
            ) from None
        self.model.eval().to(device)
        self.prompt, self.device, self.images = prompt, device, images

    @torch.no_grad()
    def __call__(self, frames: np.ndarray) -> str:
        from PIL import Image

        pick = np.linspace(0, len(frames) - 1, self.images).round().astype(int)
        images = [Image.fromarray(frames[i]) for i in pick]
        content = [*({"type": "image"} for _ in images), {"type": "text", "text": self.prompt}]
        text = self.processor.apply_chat_template(
            [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False
        )
        inputs = self.processor(text=[text], images=images, return_tensors="pt").to(self.device)
        out = self.model.generate(**inputs, max_new_tokens=96, do_sample=False)
        answer = self.processor.batch_decode(out[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)[0]
        return " ".join(answer.split())


# ---------------------------------------------------------------------------------------------------------- tools


class _Tools:
    """The networks, loaded on first use, once, shared by the worker threads. A load that fails is remembered and
    reported for every clip that needs it (status "failed"), so the run goes on."""

    def __init__(self, args: argparse.Namespace, body, capture: Callable | None):
        self.args, self.body, self.capture_fn = args, body, capture
        self._lock = threading.Lock()
        self._loaded: dict[str, object] = {}

    def _get(self, name: str, load: Callable):
        with self._lock:
            if name not in self._loaded:
                try:
                    self._loaded[name] = load()
                except CoMoViError as exc:
                    self._loaded[name] = exc
                except (OSError, RuntimeError, ValueError, KeyError) as exc:  # a file the loader did not foresee
                    self._loaded[name] = CoMoViError(f"{name} could not be loaded: {exc.__class__.__name__}: {exc}")
            value = self._loaded[name]
        if isinstance(value, CoMoViError):
            raise value
        return value

    def capture(self, frames: torch.Tensor, fps: float):
        args = self.args
        estimator = self._get("estimator", lambda: _load_estimator(args))
        detector = self._get("detector", lambda: _load_detector(args))
        capture = self.capture_fn or _capture_function()
        return capture(frames, fps, estimator=estimator, body=self.body, detector=detector, options=_options(args))

    def caption(self, frames: np.ndarray) -> str:
        args = self.args
        captioner = self._get(
            "captioner",
            lambda: VLMCaptioner(args.captioner, args.caption_prompt, _device(args), args.allow_download),
        )
        return captioner(frames)


def _device(args) -> str:
    return args.device or ("cuda" if torch.cuda.is_available() else "cpu")


def _load_estimator(args):
    from ..recovery.estimate import focal_net_arg
    from ..recovery.hmr.loading import load_estimator

    return load_estimator(args.estimator, focal_net_arg(args.focal_net), device=_device(args))


def _load_detector(args) -> Callable:
    """image (H, W, 3) -> (boxes (N, 4), scores (N,)) of every person: what ``capture_motion`` tracks."""
    from ..recovery.hmr.detect import DETECTOR_REPO, PersonDetector

    detector = PersonDetector.from_pretrained(args.detector or DETECTOR_REPO, args.allow_download)
    detector.model.to(_device(args))
    return functools.partial(detector.detect, min_score=args.min_score)


def _capture_function() -> Callable:
    from .video import capture_motion

    return capture_motion


def _options(args):
    from .video import CaptureOptions

    return CaptureOptions(
        batch_size=args.batch_size,
        shape=args.shape,
        smoothing=args.smoothing,
        lock_feet=not args.no_foot_lock,
        min_score=args.min_score,
        max_gap=args.max_gap,
        fov_degrees=args.fov,
        max_lost_fraction=args.max_missing,
        max_crowded_fraction=args.max_crowded,
        min_confidence=args.min_confidence,
        min_box_fraction=args.min_box_fraction,
    )


# ---------------------------------------------------------------------------------------------------------- one video


def _read_source(path: Path, seconds: float) -> tuple[np.ndarray, float]:
    """(the first ``seconds`` of a video as (T, H, W, 3) uint8, its frames per second)."""
    import imageio_ffmpeg

    from ..files.video import read_video

    try:
        reader = imageio_ffmpeg.read_frames(str(path))
        meta = next(reader)
        reader.close()
        fps = float(meta.get("fps") or 0)
    except (OSError, RuntimeError, StopIteration, ValueError) as exc:
        last = (str(exc).strip().splitlines() or ["no output"])[-1]
        raise CoMoViError(f"{path}: not a readable video ({last}); re-encode it as H.264 mp4") from None
    if not fps > 0:
        raise CoMoViError(f"{path}: the video states no frame rate; re-encode it (ffmpeg -i IN -r 30 OUT.mp4)")
    return read_video(path, int(math.ceil(seconds * fps)) + 2), fps


class _Reject(Exception):
    """A clip left out for what the video holds (too short, no caption, a filter): recorded, skipped next time."""

    def __init__(self, code: str, reason: str):
        super().__init__(reason)
        self.code, self.reason = code, reason


def _filter_reasons(args, result, boxes: np.ndarray, window: CropWindow) -> list[tuple[str, str]]:
    """(code, reason) of every filter the captured clip fails; ``boxes`` of the found frames in source pixels."""
    track = result.track
    lost = np.asarray(track.lost, bool)
    confidence = np.asarray(result.confidence, np.float64)
    found = []
    unsure = lost | (confidence < args.min_confidence)
    if unsure.mean() > args.max_missing:
        found.append(
            (
                "missing",
                f"the person is lost or below confidence {args.min_confidence:g} in {unsure.mean():.0%} of the "
                f"frames (more than --max-missing {args.max_missing:.0%})",
            )
        )
    crowded = np.asarray(track.people) > 1
    if crowded.mean() > args.max_crowded:
        found.append(
            (
                "several_people",
                f"more than one person in {crowded.mean():.0%} of the frames (more than --max-crowded "
                f"{args.max_crowded:.0%})",
            )
        )
    size = float(np.median(boxes[:, 3] - boxes[:, 1])) / window.height
    if size < args.min_box_fraction:
        found.append(
            (
                "too_small",
                f"the person is {size:.0%} of the crop's height (less than --min-box-fraction "
                f"{args.min_box_fraction:.0%})",
            )
        )
    if result.verdict != "ok":
        found += [("capture", f"capture: {r}") for r in (result.reasons or ["rejected"])]
    return found


def _write_clip(folder: Path, rgb: np.ndarray, motion, caption: str, record: dict, body, args) -> None:
    """The clip folder, whole: written in a hidden folder beside it and renamed into place (capture.json last)."""
    from ..body.motion_file import save_motion
    from ..files.video import mp4_writer, to_uint8
    from ..motion_map.render import render_motion

    maps = render_motion(body, motion, backend=args.renderer).images
    with staged_folder(folder, _CLIP_FILES.__contains__, "capture.json") as staging:
        for name, frames in (("rgb.mp4", rgb), ("motion_map.mp4", to_uint8(maps.cpu()))):
            with mp4_writer(staging / name, args.height, args.width, args.fps) as send:
                send(frames)
        save_motion(staging / "motion.npz", motion)
        for name, text in (("caption.txt", caption + "\n"), ("capture.json", json.dumps(record, indent=1) + "\n")):
            with atomic_path(staging / name) as tmp:
                tmp.write_text(text)


def _process_clip(record: dict, source: np.ndarray, source_fps: float, args, tools: _Tools, captions) -> dict:
    """One clip of a decoded video -> its record (kept; or raises _Reject)."""
    from ..body.motion_file import SMPLMotion

    video, start, frames = Path(record["video"]), record["start"], record["frames"]
    tick = time.perf_counter()
    picks = source_indices(start, frames, args.fps, source_fps)
    if picks[-1] >= len(source):
        have = len(source) / source_fps
        raise _Reject(
            "too_short",
            f"the video is {have:.2f} s long; clip {record['index']} needs {start + (frames - 1) / args.fps:.2f} s "
            f"({frames} frames at {args.fps:g} fps from {start:g} s): give a longer video or a shorter --clip-seconds",
        )
    caption, caption_source = None, None
    if captions is not None:
        caption, caption_source = captions.find(video, start, 0.5 / args.fps), "captions"
    if caption is None:
        caption, caption_source = sidecar_caption(video), "sidecar"
    if caption is None and not args.captioner:
        raise _Reject(
            "no_caption",
            f"no caption: put one in {video.with_suffix('.txt').name} beside the video, a row in --captions, "
            "or use --captioner",
        )
    clip = source[picks]  # (F, H, W, 3) uint8
    height, width = clip.shape[1:3]
    scale = min(1.0, _MAX_CAPTURE_SIDE / max(height, width))
    pixels = torch.from_numpy(clip).float() / 255
    if scale < 1:
        size = (round(height * scale), round(width * scale))
        pixels = torch.nn.functional.interpolate(
            pixels.permute(0, 3, 1, 2), size=size, mode="bilinear", antialias=True, align_corners=False
        ).permute(0, 2, 3, 1)
    result = tools.capture(pixels.contiguous(), args.fps)
    capture_s = time.perf_counter() - tick
    lost = np.asarray(result.track.lost, bool)
    confidence = np.asarray(result.confidence, np.float64)
    record.update(
        confidence={
            "mean": round(float(confidence.mean()), 3),
            "min": round(float(confidence.min()), 3),
            "low_fraction": round(float((confidence < args.min_confidence).mean()), 3),
        },
        lost_fraction=round(float(lost.mean()), 3),
    )
    if lost.all():
        raise _Reject("no_person", "no person found in the clip")
    to_source = np.array([width, height, width, height]) / np.array([*pixels.shape[2:0:-1]] * 2)
    boxes = np.asarray(result.track.boxes, np.float64)[~lost] * to_source
    window = clip_window(boxes, (height, width), (args.height, args.width), args.margin)
    record["crop"] = dataclasses.asdict(window)
    problems = _filter_reasons(args, result, boxes, window)
    if problems:
        record.update(status="rejected", codes=[c for c, _ in problems], reasons=[r for _, r in problems])
        record["seconds"] = {"capture": round(capture_s, 2)}
        return record
    rgb = crop_frames(clip, window, (args.height, args.width))
    if caption is None:
        caption, caption_source = tools.caption(rgb), "captioner"
    camera = result.motion.camera
    if camera.image_size != (height, width):
        camera = camera.resized(height, width)
    camera = camera.cropped(window.top, window.left, window.height, window.width).resized(args.height, args.width)
    m = result.motion
    motion = SMPLMotion(m.global_orient, m.body_pose, m.betas, m.transl, args.fps, camera, m.gender, m.foot_contact)
    record.update(status="kept", codes=[], reasons=[], caption_source=caption_source)
    record["seconds"] = {"capture": round(capture_s, 2)}
    tick = time.perf_counter()
    _write_clip(args.out / record["clip"], rgb, motion, caption, record, tools.body, args)
    record["seconds"]["write"] = round(time.perf_counter() - tick, 2)
    return record


def _process_video(job: dict, args, tools: _Tools, captions: CaptionTable | None) -> list[dict]:
    """The clips still to do of one video -> their report records. Nothing here stops the run."""
    video, todo = job["video"], job["todo"]
    frames = clip_frame_count(args.clip_seconds, args.fps)
    base = {"video": str(video), "frames": frames, "fps": args.fps}
    tick = time.perf_counter()
    try:
        source, source_fps = _read_source(video, max(todo) * args.clip_seconds + frames / args.fps)
    except CoMoViError as exc:
        reason = str(exc)
        return [
            {**base, "index": None, "clip": None, "status": "rejected", "codes": ["unreadable"], "reasons": [reason]}
        ]
    decode_s = round(time.perf_counter() - tick, 2)
    records = []
    for index in todo:
        record = {**base, "index": index, "clip": job["names"][index], "start": index * args.clip_seconds}
        tick = time.perf_counter()
        try:
            record = _process_clip(record, source, source_fps, args, tools, captions)
        except _Reject as rej:
            record.update(status="rejected", codes=[rej.code], reasons=[rej.reason])
        except CoMoViError as exc:
            record.update(status="failed", codes=["tool"], reasons=[str(exc)])
        except Exception as exc:  # noqa: BLE001 - a bug or an unforeseen file must not stop the other videos
            log.exception("%s clip %d failed", video, index)
            record.update(status="failed", codes=["error"], reasons=[f"{exc.__class__.__name__}: {exc}"])
        record.setdefault("seconds", {}).update(decode=decode_s, total=round(time.perf_counter() - tick, 2))
        records.append(record)
    return records


# ---------------------------------------------------------------------------------------------------------- the run


class _Report:
    """report.jsonl (appended, one line per clip and run) and summary.json (rewritten), in the dataset folder."""

    def __init__(self, folder: Path):
        self.path, self.records = folder / _REPORT, []
        if self.path.is_file():
            lines = self.path.read_text().splitlines()
            for line in lines:
                try:
                    self.records.append(json.loads(line))
                except ValueError:
                    log.warning("%s: dropped a torn line (a killed run)", self.path)
            if len(self.records) != len([ln for ln in lines if ln.strip()]):
                with atomic_path(self.path) as tmp:
                    tmp.write_text("".join(json.dumps(r) + "\n" for r in self.records))

    def latest(self) -> dict[str, dict]:
        """video -> {clip index (None: the whole video) -> its latest record}."""
        state: dict[str, dict] = {}
        for r in self.records:
            clips = state.setdefault(r["video"], {})
            if r.get("index") is None:
                clips.clear()
            else:
                clips.pop(None, None)
            clips[r.get("index")] = r
        return state

    def add(self, records: list[dict], settings: dict) -> dict:
        """Append ``records`` (one write) and rewrite summary.json; -> the summary."""
        if records:
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write("".join(json.dumps(r) + "\n" for r in records))
                fh.flush()
            self.records += records
        latest = [r for clips in self.latest().values() for r in clips.values()]
        summary = {
            "videos": len({r["video"] for r in latest}),
            **{status: sum(r["status"] == status for r in latest) for status in ("kept", "rejected", "failed")},
            "rejected_by_reason": dict(
                Counter(c for r in latest if r["status"] == "rejected" for c in set(r["codes"]))
            ),
            "failed_by_reason": dict(Counter(c for r in latest if r["status"] == "failed" for c in set(r["codes"]))),
            "settings": settings,
        }
        path, text = self.path.parent / _SUMMARY, json.dumps(summary, indent=1) + "\n"
        if not path.is_file() or path.read_text() != text:  # a run with nothing to do rewrites nothing
            with atomic_path(path) as tmp:
                tmp.write_text(text)
        return summary


def _check_args(args) -> None:
    positive = {"--clip-seconds": args.clip_seconds, "--fps": args.fps, "--clips-per-video": args.clips_per_video}
    positive.update({"--workers": args.workers, "--batch-size": args.batch_size})
    for flag, value in positive.items():
        if not value > 0:
            raise CoMoViError(f"{flag} must be positive, got {value}")
    for flag in ("max_missing", "max_crowded", "min_box_fraction", "min_confidence", "margin"):
        if not 0 <= getattr(args, flag) <= 1:
            raise CoMoViError(f"--{flag.replace('_', '-')} is a fraction in 0..1, got {getattr(args, flag)}")
    check_training_size(args.height, args.width, clip_frame_count(args.clip_seconds, args.fps))
    if args.estimator is None:
        raise CoMoViError(
            "--estimator is needed: the HMR 2.0 or CameraHMR checkpoint that poses the body in every frame (see "
            "README, 'Start pose', for where to download it into models/smpl_estimators)"
        )
    if not args.estimator.is_file():
        raise CoMoViError(
            f"--estimator {args.estimator} not found: download HMR 2.0 or CameraHMR (README, 'Start pose') into "
            "models/smpl_estimators and give that file"
        )
    if args.body_model is not None and not args.body_model.exists():
        raise CoMoViError(f"--body-model {args.body_model} not found: give the SMPL file or folder (README, 'SMPL')")
    check_writable_folder(args.out, "--out dataset folder")
    for path in args.inputs:
        if not path.exists():
            raise CoMoViError(f"input {path} not found: give video files or folders of videos")


def _find_videos(inputs: list[Path], out: Path) -> list[Path]:
    """The videos named or found (recursively, by suffix) in the folders, without those under ``out``."""
    out = out.resolve()
    found = []
    for path in inputs:
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.suffix.lower() in _VIDEO_SUFFIXES and p.is_file())
        else:
            found.append(path)
    unique = {}
    for p in found:
        resolved = p.resolve()
        if out not in resolved.parents and not any(part.startswith(".") for part in p.parts[-1:]):
            unique.setdefault(resolved, p)
    if not unique:
        raise CoMoViError(f"no videos found in {[str(p) for p in inputs]} (looked for {', '.join(_VIDEO_SUFFIXES)})")
    return list(unique.values())


def _clip_names(videos: list[Path], count: int) -> dict[Path, list[str]]:
    """Clip folder names: the video's name and the clip's number; a short hash of its path where names repeat."""

    def clean(path):
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", path.stem).strip("._") or "video"

    stems = Counter(clean(v) for v in videos)
    names = {}
    for v in videos:
        stem = clean(v)
        if stems[stem] > 1:
            stem += "-" + hashlib.sha1(str(v.resolve()).encode()).hexdigest()[:6]
        names[v] = [f"{stem}_{k:02d}" for k in range(count)]
    return names


def _settings(args, frames: int) -> dict:
    """What the clip folders depend on; a dataset is continued only with the same."""
    return {
        "frames": frames,
        "fps": args.fps,
        "height": args.height,
        "width": args.width,
        "clip_seconds": args.clip_seconds,
        "margin": args.margin,
        "body_model": str(args.body_model.resolve()) if args.body_model else "stand-in mannequin (NOT SMPL)",
    }


def _check_settings(out: Path, settings: dict) -> None:
    path = out / _SETTINGS
    if path.is_file():
        old = json.loads(path.read_text())
        changed = {k: (old.get(k), v) for k, v in settings.items() if old.get(k) != v}
        if changed:
            raise CoMoViError(
                f"{out} holds clips made with other settings (before -> now: {changed}): give the same settings to "
                "continue it, or another --out"
            )
    else:
        out.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(settings, indent=1) + "\n")


def _clean_debris(out: Path) -> None:
    """What a killed run left: staging folders of clips, temporary files of the report and summary."""
    for path in out.glob(".*"):
        if path.is_dir() and ".partial-" in path.name:
            shutil.rmtree(path, ignore_errors=True)
        elif path.is_file() and path.name.startswith(tuple(f".{n}." for n in (_REPORT, _SUMMARY, _SETTINGS))):
            path.unlink(missing_ok=True)


def _complete(folder: Path) -> bool:
    return all((folder / name).is_file() for name in _CLIP_FILES)


def _plan(args, videos: list[Path], report: _Report) -> tuple[list[dict], list[dict]]:
    """(jobs: video, clip names and the clip numbers still to do; records of finished clips the report lacks)."""
    names = _clip_names(videos, args.clips_per_video)
    latest = report.latest()
    jobs, recovered = [], []
    for video in videos:
        seen = latest.get(str(video), {})
        todo = []
        for k, name in enumerate(names[video]):
            if _complete(args.out / name):
                if seen.get(k, {}).get("status") != "kept":  # published, then killed before the report line
                    recovered.append(json.loads((args.out / name / "capture.json").read_text()))
                continue
            before = seen.get(k) or seen.get(None)
            if before is not None and before["status"] == "rejected" and not args.retry_rejected:
                continue
            todo.append(k)
        if todo:
            jobs.append({"video": video, "names": names[video], "todo": todo})
    return jobs, recovered


def run(args: argparse.Namespace, capture: Callable | None = None) -> dict:
    """Make the clips; -> the summary. ``capture``: a stand-in for ``capture.video.capture_motion`` (tests)."""
    frames = clip_frame_count(args.clip_seconds, args.fps)
    _check_args(args)
    captions = CaptionTable(args.captions) if args.captions is not None else None
    videos = _find_videos(args.inputs, args.out)
    settings = _settings(args, frames)
    _check_settings(args.out, settings)
    _clean_debris(args.out)
    report = _Report(args.out)
    jobs, recovered = _plan(args, videos, report)
    summary = report.add(recovered, settings)
    skipped = len(videos) - len(jobs)
    log.info(
        "%d videos: %d to do, %d done or rejected before (--retry-rejected redoes those)",
        len(videos),
        len(jobs),
        skipped,
    )
    if jobs:
        from ..body.smpl import load_body_model

        if args.body_model is None:
            log.warning(
                "NO SMPL MODEL (--body-model): the motion maps and motion.npz of these clips are made with the "
                "stand-in mannequin, NOT SMPL; they are for trying the pipeline only, not for training CoMoVi"
            )
        tools = _Tools(args, load_body_model(args.body_model, device=_device(args)), capture)
        for records in _progress(args, jobs, lambda job: _process_video(job, args, tools, captions)):
            summary = report.add(records, settings)
    log.info(
        "%s: %d clips kept, %d rejected %s, %d failed; see %s",
        args.out,
        summary["kept"],
        summary["rejected"],
        summary["rejected_by_reason"],
        summary["failed"],
        args.out / _REPORT,
    )
    if summary["failed"]:
        first = next(r for r in reversed(report.records) if r["status"] == "failed")
        raise CoMoViError(
            f"{summary['failed']} clip(s) failed (a tool could not run; they are retried when the command runs "
            f"again), e.g. {first['video']}: {first['reasons'][0]}"
        )
    return summary


def _progress(args, jobs: list[dict], work: Callable):
    """Each job's result as it finishes, under a progress bar; ``--workers`` videos at once (threads)."""
    try:
        from tqdm import tqdm
    except ImportError:
        tqdm = None
    bar = None if tqdm is None or args.no_progress else tqdm(total=len(jobs), unit="video", desc="capture")
    try:
        if args.workers == 1:
            results = map(work, jobs)
        else:
            from concurrent.futures import ThreadPoolExecutor, as_completed

            pool = ThreadPoolExecutor(args.workers, thread_name_prefix="capture")
            results = (f.result() for f in as_completed([pool.submit(work, job) for job in jobs]))
        for result in results:
            if bar is not None:
                bar.update()
            yield result
    finally:
        if bar is not None:
            bar.close()
        if args.workers > 1:
            pool.shutdown(cancel_futures=True)


def main(argv=None) -> int:
    return run_cli(parse_args, run, log, argv)
