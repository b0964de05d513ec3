"""Render a SMPL motion file into a motion-map video (docs/motion_map.md).

    python -m comovi_core.motion_map --motion motion.npz --body-model models/smpl --out motion_map.mp4

With no ``--motion`` a built-in demo motion is rendered; with no ``--body-model`` the built-in
stand-in mannequin (NOT SMPL) is used, so the command works on a fresh machine:

    python -m comovi_core.motion_map --out outputs/demo_motion_map.mp4
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import torch

from ..errors import CoMoViError, run_cli
from .render import BACKENDS
from .shading import DEFAULT_SHADING, SHADINGS

log = logging.getLogger("comovi_core.motion_map")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m comovi_core.motion_map", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--motion",
        type=Path,
        help="SMPL motion file (.npz, see comovi_core.body.motion_file); default: a built-in demo motion",
    )
    p.add_argument(
        "--body-model",
        type=Path,
        help=(
            "SMPL model file or folder (e.g. ComfyUI models/smpl); default: the built-in stand-in mannequin (not SMPL)"
        ),
    )
    p.add_argument(
        "--gender",
        default="neutral",
        choices=("neutral", "male", "female"),
        help="which SMPL model to pick from a folder",
    )
    p.add_argument("--out", type=Path, required=True, help="output video, .mp4")
    p.add_argument("--png-dir", type=Path, help="also write every frame as a lossless PNG into this folder")
    p.add_argument(
        "--height",
        type=int,
        help="output height in pixels (camera intrinsics are rescaled); default: the motion's image size",
    )
    p.add_argument("--width", type=int, help="output width in pixels; default: the motion's image size")
    p.add_argument(
        "--shading",
        default=DEFAULT_SHADING,
        choices=SHADINGS,
        help="comovi_v1 = as the release's training data; flat = the paper's unshaded colours",
    )
    p.add_argument(
        "--backend",
        default="auto",
        choices=BACKENDS,
        help="renderer: torch (no OpenGL), pyrender (OpenGL), auto (OpenGL only for large clips on CPU)",
    )
    p.add_argument(
        "--device",
        default="cuda" if torch.cuda.is_available() else "cpu",
        help="torch device for the body model and the torch renderer",
    )
    p.add_argument("--fps", type=float, help="video frame rate; default: the motion's fps")
    p.add_argument("--frames-per-chunk", type=int, default=16, help="frames rendered at once (memory vs speed)")
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> Path:
    from ..body.mannequin import demo_motion
    from ..body.motion_file import load_motion
    from ..body.smpl import load_body_model
    from ..files.atomic import check_writable_file, check_writable_folder
    from ..files.video import check_mp4_size, mp4_writer, to_uint8, write_pngs
    from .render import iter_motion

    if args.out.suffix.lower() != ".mp4":
        raise CoMoViError(f"--out must be an .mp4 file, got {args.out}")
    check_writable_file(args.out, "--out video")
    if args.png_dir:
        check_writable_folder(args.png_dir, "--png-dir folder")
    motion = load_motion(args.motion) if args.motion else demo_motion()
    camera = motion.camera
    if args.height or args.width:
        camera = camera.resized(args.height or camera.height, args.width or camera.width)
    check_mp4_size(camera.height, camera.width)
    model = load_body_model(args.body_model, args.gender, device=args.device)
    if model.is_standin:
        log.warning("rendering the stand-in mannequin: this is NOT SMPL; pass --body-model for real SMPL motion maps")
    start = time.perf_counter()
    with torch.inference_mode():
        with mp4_writer(args.out, camera.height, camera.width, args.fps or motion.fps) as send:
            for chunk in iter_motion(
                model, motion, camera, args.shading, args.backend, frames_per_chunk=args.frames_per_chunk
            ):
                frames = to_uint8(chunk.images)
                send(frames)
                if args.png_dir:
                    write_pngs(args.png_dir, frames, chunk.first_frame)
    log.info(
        "wrote %d frames (%dx%d, %s, %s backend) to %s in %.1f s",
        motion.num_frames,
        camera.height,
        camera.width,
        args.shading,
        chunk.backend,
        args.out,
        time.perf_counter() - start,
    )
    return args.out


def main(argv=None) -> int:
    return run_cli(parse_args, run, log, argv)


if __name__ == "__main__":
    sys.exit(main())
