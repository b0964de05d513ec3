"""Export a SMPL motion for DCC tools: BVH (skeleton animation), an OBJ mesh sequence, or a skinned glTF.

    python -m comovi_core.export motion.npz --format bvh --out clip.bvh [--body-model models/smpl]
    python -m comovi_core.export motion.npz --format obj --out meshes/ [--body-model models/smpl]
    python -m comovi_core.export motion.npz --format glb --out clip.glb [--body-model models/smpl]

``glb`` (mesh + skin + animation in one file) is written by ``comovi_core.export.gltf``.

Both are written in a y-up world (what Blender, Maya and Houdini expect): the camera frame of the
motion file (OpenCV, y down, z forward) is turned 180 degrees about x, so the camera sits at the
origin looking down -z. BVH: the 24 SMPL joints with offsets from the shaped rest skeleton (betas),
root channels ``Xposition Yposition Zposition Zrotation Xrotation Yrotation`` (the root joint's world
position, zero root OFFSET) and ``Z X Y`` rotations (degrees, intrinsic) for the others, one frame per
motion frame at the motion's fps. Units: metres.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from pathlib import Path

import numpy as np
import torch

from ..body.motion_file import SMPLMotion, load_motion
from ..body.parts import SMPL_JOINT_NAMES
from ..body.smpl import BodyModel, camera_vertices, load_body_model
from ..errors import CoMoViError, run_cli
from ..files.atomic import atomic_path, check_writable_file, check_writable_folder, staged_folder

log = logging.getLogger("comovi_core.export.cli")
FORMATS = ("bvh", "obj", "glb")
CAMERA_TO_WORLD = np.diag([1.0, -1.0, -1.0])  # 180 degrees about x: OpenCV camera -> y-up world
OBJ_FRAME = re.compile(r"frame_\d{6}\.obj")  # the names write_obj_sequence gives its frames, and only those


def _rest_joints(model: BodyModel, betas: np.ndarray) -> np.ndarray:
    """(24, 3) joints of the shaped body in the T-pose, SMPL model space (y up)."""
    with torch.no_grad():
        return model(torch.zeros(1, 3), torch.zeros(1, 69), torch.from_numpy(betas)).joints[0].double().numpy()


def bvh_text(model: BodyModel, motion: SMPLMotion) -> str:
    """The BVH file for ``motion`` on ``model``'s skeleton."""
    rest = _rest_joints(model, motion.betas)
    parents = [-1] + model.smpl.parents.tolist()[1:]
    children = {j: [c for c in range(24) if parents[c] == j] for j in range(24)}
    lines = ["HIERARCHY"]

    def joint(j: int, depth: int) -> None:
        pad = "  " * depth
        offset = rest[j] - rest[parents[j]] if parents[j] >= 0 else np.zeros(3)  # the root moves by its channels
        lines.append(f"{pad}{'ROOT' if depth == 0 else 'JOINT'} {SMPL_JOINT_NAMES[j]}")
        lines.append(f"{pad}{{")
        lines.append(f"{pad}  OFFSET {offset[0]:.6f} {offset[1]:.6f} {offset[2]:.6f}")
        channels = (
            "6 Xposition Yposition Zposition Zrotation Xrotation Yrotation"
            if depth == 0
            else "3 Zrotation Xrotation Yrotation"
        )
        lines.append(f"{pad}  CHANNELS {channels}")
        for c in children[j]:
            joint(c, depth + 1)
        if not children[j]:
            lines.extend(
                [f"{pad}  End Site", f"{pad}  {{", f"{pad}    OFFSET 0.000000 0.050000 0.000000", f"{pad}  }}"]
            )
        lines.append(f"{pad}}}")

    joint(0, 0)
    frames = motion.num_frames
    poses = motion.full_pose.reshape(frames, 24, 3).astype(np.float64)
    from scipy.spatial.transform import Rotation  # on use: scipy costs ~0.4 s at ComfyUI start-up

    local = Rotation.from_rotvec(poses.reshape(-1, 3)).as_matrix().reshape(frames, 24, 3, 3)
    local[:, 0] = CAMERA_TO_WORLD @ local[:, 0]  # root orientation in the y-up world
    # SMPL puts the root joint at rest[0] + transl (rotation about the rest root joint)
    root = (rest[0] + motion.transl.astype(np.float64)) @ CAMERA_TO_WORLD.T
    euler = Rotation.from_matrix(local.reshape(-1, 3, 3)).as_euler("ZXY", degrees=True).reshape(frames, 24, 3)
    lines += ["MOTION", f"Frames: {frames}", f"Frame Time: {1.0 / motion.fps:.6f}"]
    order = [j for j in _depth_first(children)]
    for f in range(frames):
        values = list(root[f]) + [v for j in order for v in euler[f, j]]
        lines.append(" ".join(f"{v:.6f}" for v in values))
    return "\n".join(lines) + "\n"


def _depth_first(children: dict) -> list[int]:
    out, stack = [], [0]
    while stack:
        j = stack.pop()
        out.append(j)
        stack.extend(reversed(children[j]))
    return out


def write_bvh(path: str | Path, model: BodyModel, motion: SMPLMotion) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(bvh_text(model, motion))
    return path


def write_obj_sequence(folder: str | Path, model: BodyModel, motion: SMPLMotion) -> list[Path]:
    """One ``frame_000000.obj`` per frame (vertices in the y-up world, faces 1-based). The sequence is written
    beside ``folder`` and published whole (``atomic.staged_folder``): frames of an earlier, longer export into the
    same folder are removed, other files stay, and a failure leaves the folder as it was."""
    folder = Path(folder)
    check_writable_folder(folder, "OBJ folder")
    with torch.no_grad():
        verts = camera_vertices(model, motion).vertices.double().numpy() @ CAMERA_TO_WORLD.T  # (T, V, 3)
    faces = "".join(f"f {a} {b} {c}\n" for a, b, c in (model.faces.numpy() + 1))
    names = [f"frame_{f:06d}.obj" for f in range(len(verts))]
    with staged_folder(folder, OBJ_FRAME.fullmatch) as staging:
        for name, v in zip(names, verts):
            (staging / name).write_text("".join(f"v {x:.6f} {y:.6f} {z:.6f}\n" for x, y, z in v) + faces)
    return [folder / name for name in names]


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
