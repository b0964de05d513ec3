"""``python -m comovi_core.export``: write a SMPL motion for DCC tools as BVH (skeleton animation, ``bvh``), an
OBJ mesh sequence (``obj``) or a skinned animated glTF binary (``glb``, written by ``gltf``).

    python -m comovi_core.export motion.npz --format bvh --out clip.bvh [--body-model models/smpl]
    python -m comovi_core.export motion.npz --format obj --out meshes/ [--body-model models/smpl]
    python -m comovi_core.export motion.npz --format glb --out clip.glb [--body-model models/smpl]

All are written in a y-up world (``skeleton.CAMERA_TO_WORLD``), in metres.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ..body.motion_file import load_motion
from ..body.smpl import load_body_model
from ..errors import CoMoViError, run_cli
from ..files.atomic import check_writable_file, check_writable_folder
from .bvh import write_bvh
from .obj import write_obj_sequence

log = logging.getLogger("comovi_core.export")
FORMATS = ("bvh", "obj", "glb")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m comovi_core.export", description=__doc__.split("\n\n")[0])
    p.add_argument("motion", type=Path, help="SMPL motion file (.npz)")
    p.add_argument(
        "--format",
        required=True,
        choices=FORMATS,
        help="bvh: skeleton animation; obj: one mesh per frame; glb: skinned animated mesh",
    )
    p.add_argument("--out", type=Path, required=True, help="output .bvh / .glb file, or a folder for obj")
    p.add_argument(
        "--body-model", type=Path, help="SMPL model file or folder; default: the stand-in mannequin (not SMPL)"
    )
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> Path:
    if args.format in ("bvh", "glb") and args.out.suffix.lower() != f".{args.format}":
        raise CoMoViError(f"--out must end in .{args.format} for --format {args.format}, got {args.out.name}")
    if args.format == "obj":
        check_writable_folder(args.out, "--out folder")
    else:
        check_writable_file(args.out, "--out file")
    motion = load_motion(args.motion)
    model = load_body_model(
        args.body_model, motion.gender if motion.gender in ("neutral", "male", "female") else "neutral"
    )
    if args.format == "bvh":
        write_bvh(args.out, model, motion)
    elif args.format == "glb":
        from .gltf import write_glb

        write_glb(args.out, model, motion)
    else:
        write_obj_sequence(args.out, model, motion)
    log.info("exported %d frames as %s to %s", motion.num_frames, args.format, args.out)
    return args.out


def main(argv=None) -> int:
    return run_cli(parse_args, run, log, argv)


if __name__ == "__main__":
    sys.exit(main())
