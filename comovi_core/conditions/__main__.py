"""Render a SMPL motion file as pose-condition videos for other video models (docs/comfyui.md#pose-conditions).

    python -m comovi_core.conditions --motion motion.npz --body-model models/smpl --out outputs/conditions

writes ``skeleton.mp4``, ``depth.mp4``, ``normal.mp4``, ``mesh.mp4`` (``--kinds`` picks) and ``keypoints.json`` (one
OpenPose dict per frame, as ComfyUI's POSE_KEYPOINT) into ``--out``. With no ``--motion`` the built-in demo motion
is rendered; with no ``--body-model`` the built-in stand-in mannequin (NOT SMPL). ``--picture`` writes one frame's
motion map, skeleton, depth and normals side by side instead (the README's picture):

    python -m comovi_core.conditions --picture docs/images/pose_conditions.png --height 352 --width 640
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from pathlib import Path

import numpy as np
import torch

from ..errors import CoMoViError, run_cli
from ..motion_map.render import BACKENDS
from .render import CONDITION_KINDS

log = logging.getLogger("comovi_core.conditions")
PICTURE_MARGIN = 16  # pixels kept around the body's box in --picture


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m comovi_core.conditions", description=__doc__.split("\n\n")[0])
    p.add_argument("--motion", type=Path, help="SMPL motion file (.npz); default: a built-in demo motion")
    p.add_argument(
        "--body-model", type=Path, help="SMPL model file or folder; default: the built-in stand-in mannequin (not SMPL)"
    )
    p.add_argument("--gender", default="neutral", choices=("neutral", "male", "female"), help="SMPL model to pick")
    p.add_argument("--out", type=Path, help="output folder for the videos and keypoints.json")
    p.add_argument("--kinds", nargs="+", default=list(CONDITION_KINDS), choices=CONDITION_KINDS, help="videos to write")
    p.add_argument("--picture", type=Path, help="write one frame's motion map, skeleton, depth and normals (.png)")
    p.add_argument("--frame", type=int, default=6, help="the frame --picture shows")
    p.add_argument("--height", type=int, help="output height in pixels; default: the motion's image size")
    p.add_argument("--width", type=int, help="output width in pixels; default: the motion's image size")
    p.add_argument("--line-scale", type=float, default=0.0, help="skeleton limb width / 4 px; 0: by image size")
    p.add_argument("--backend", default="auto", choices=BACKENDS, help="renderer of depth, normal and mesh")
    p.add_argument("--fps", type=float, help="video frame rate; default: the motion's fps")
    return p.parse_args(argv)


def comparison_picture(model, motion, camera, frame: int, line_scale: float = 0.0) -> np.ndarray:
    """One frame's motion map, skeleton, depth and normal pictures side by side, cropped to the body: (H', W', 3)."""
    from ..motion_map.render import render_motion
    from .render import render_pose_conditions

    one = motion.frame(frame)
    conditions = render_pose_conditions(model, one, camera=camera, line_scale=line_scale, backend="torch")
    motion_map = render_motion(model, one, camera, backend="torch")
    rows, cols = np.nonzero((motion_map.mask[0] | (conditions.skeleton[0].sum(-1) > 0)).numpy())
    top, bottom = max(rows.min() - PICTURE_MARGIN, 0), min(rows.max() + PICTURE_MARGIN + 1, camera.height)
    left, right = max(cols.min() - PICTURE_MARGIN, 0), min(cols.max() + PICTURE_MARGIN + 1, camera.width)
    panels = [motion_map.images[0], conditions.skeleton[0], conditions.depth[0], conditions.normal[0]]
    return np.concatenate([(p[top:bottom, left:right].numpy() * 255).round().astype(np.uint8) for p in panels], 1)


def run(args: argparse.Namespace) -> Path:
    from PIL import Image

    from ..body.mannequin import demo_motion
    from ..body.motion_file import load_motion
    from ..body.smpl import load_body_model
    from ..files.atomic import atomic_path, check_writable_file, check_writable_folder
    from ..files.video import check_mp4_size, mp4_writer, to_uint8
    from .render import iter_pose_conditions

    if (args.out is None) == (args.picture is None):
        raise CoMoViError("give either --out FOLDER (the videos) or --picture FILE.png (one frame side by side)")
    motion = load_motion(args.motion) if args.motion else demo_motion()
    camera = motion.camera
    if args.height or args.width:
        camera = camera.resized(args.height or camera.height, args.width or camera.width)
    model = load_body_model(args.body_model, args.gender)
    if args.picture:
        if args.picture.suffix.lower() != ".png":
            raise CoMoViError(f"--picture must be a .png file, got {args.picture.name}")
        check_writable_file(args.picture, "--picture")
        with torch.inference_mode():
            picture = comparison_picture(model, motion, camera, args.frame, args.line_scale)
        with atomic_path(args.picture) as tmp:
            Image.fromarray(picture).save(tmp, format="PNG", optimize=True)
        log.info("wrote frame %d's motion map, skeleton, depth and normals to %s", args.frame, args.picture)
        return args.picture
    check_writable_folder(args.out, "--out folder")
    check_mp4_size(camera.height, camera.width)
    keypoints = []
    with torch.inference_mode(), contextlib.ExitStack() as stack:
        fps = args.fps or motion.fps
        send = {
            k: stack.enter_context(mp4_writer(args.out / f"{k}.mp4", camera.height, camera.width, fps))
            for k in args.kinds
        }
        options = {"camera": camera, "kinds": args.kinds, "line_scale": args.line_scale, "backend": args.backend}
        for chunk in iter_pose_conditions(model, motion, **options):
            for kind in args.kinds:
                send[kind](to_uint8(chunk.image(kind)))
            keypoints += chunk.keypoints.openpose_frames()
    with atomic_path(args.out / "keypoints.json") as tmp:
        tmp.write_text(json.dumps(keypoints))
    log.info("wrote %s and keypoints.json (%d frames) to %s", ", ".join(args.kinds), motion.num_frames, args.out)
    return args.out


def main(argv=None) -> int:
    return run_cli(parse_args, run, log, argv)


if __name__ == "__main__":
    sys.exit(main())
