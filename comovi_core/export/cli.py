"""``python -m comovi_core.export``: write a SMPL motion for DCC tools as BVH (skeleton animation, ``bvh``), an
OBJ mesh sequence (``obj``), a skinned animated glTF binary (``glb``, written by ``gltf``) or FBX (``fbx``,
through Blender's exporter: needs ``pip install bpy``).

    python -m comovi_core.export motion.npz --format bvh --out clip.bvh [--body-model models/smpl]
    python -m comovi_core.export motion.npz --format bvh --out clip.bvh --skeleton mixamo --in-place --ground
    python -m comovi_core.export motion.npz --format glb --out clip.glb --skeleton ue5 --fps 30
    python -m comovi_core.export motion.npz --format obj --out meshes/ [--body-model models/smpl]

All are written in a y-up world (``skeleton.CAMERA_TO_WORLD``), in metres. ``--skeleton`` retargets BVH, glTF and
FBX to Mixamo, UE5 Manny/Quinn or VRM bones (``retarget``); ``--in-place``, ``--ground`` and ``--fps`` apply to
every format.
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
from ..retarget.skeletons import EXPORT_SKELETONS
from .bvh import write_bvh
from .obj import write_obj_sequence
from .skeleton import ExportOptions

log = logging.getLogger("comovi_core.export")
FORMATS = ("bvh", "obj", "glb", "fbx")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m comovi_core.export", description=__doc__.split("\n\n")[0])
    p.add_argument("motion", type=Path, help="SMPL motion file (.npz)")
    p.add_argument(
        "--format",
        required=True,
        choices=FORMATS,
        help="bvh: skeleton animation; obj: one mesh per frame; glb: skinned animated mesh; fbx: the glb through "
        "Blender's FBX exporter (pip install bpy)",
    )
    p.add_argument("--out", type=Path, required=True, help="output .bvh / .glb / .fbx file, or a folder for obj")
    p.add_argument(
        "--skeleton",
        choices=EXPORT_SKELETONS,
        default="smpl",
        help="bones of bvh / glb / fbx: SMPL's 24 joints, or retargeted to Mixamo, UE5 Manny/Quinn or VRM humanoid",
    )
    p.add_argument("--in-place", action="store_true", help="remove the horizontal root motion (stay over the origin)")
    p.add_argument("--ground", action="store_true", help="move the clip so its lowest foot vertex is at y = 0")
    p.add_argument("--fps", type=float, default=0.0, help="resample to this frame rate (default: keep the motion's)")
    p.add_argument(
        "--body-model", type=Path, help="SMPL model file or folder; default: the stand-in mannequin (not SMPL)"
    )
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> Path:
    options = ExportOptions(skeleton=args.skeleton, in_place=args.in_place, ground=args.ground, fps=args.fps)
    if args.format != "obj" and args.out.suffix.lower() != f".{args.format}":
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
        write_bvh(args.out, model, motion, options)
    elif args.format == "glb":
        from .gltf import write_glb

        write_glb(args.out, model, motion, options)
    elif args.format == "fbx":
        from .fbx import write_fbx

        write_fbx(args.out, model, motion, options)
    else:
        write_obj_sequence(args.out, model, motion, options)
    log.info("exported %d frames as %s to %s", motion.num_frames, args.format, args.out)
    return args.out


def main(argv=None) -> int:
    return run_cli(parse_args, run, log, argv)


if __name__ == "__main__":
    sys.exit(main())
