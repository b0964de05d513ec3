"""An OBJ mesh sequence of a SMPL motion: one file per frame, in the y-up world of ``skeleton.CAMERA_TO_WORLD``
(the clip options in place, on the ground and fps apply; the skeleton option does not: meshes have no bones)."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from ..body.motion_file import SMPLMotion
from ..body.smpl import BodyModel
from ..files.atomic import check_writable_folder, staged_folder
from .skeleton import ExportOptions, export_world

OBJ_FRAME = re.compile(r"frame_\d{6}\.obj")  # the names write_obj_sequence gives its frames, and only those


def write_obj_sequence(
    folder: str | Path, model: BodyModel, motion: SMPLMotion, options: ExportOptions | None = None
) -> list[Path]:
    """One ``frame_000000.obj`` per frame (vertices in the y-up world, faces 1-based). The sequence is written
    beside ``folder`` and published whole (``atomic.staged_folder``): frames of an earlier, longer export into the
    same folder are removed, other files stay, and a failure leaves the folder as it was."""
    folder = Path(folder)
    check_writable_folder(folder, "OBJ folder")
    world = export_world(model, motion, options or ExportOptions())
    with torch.no_grad():
        verts = model(world.global_orient, world.body_pose, world.betas, world.transl).vertices.double().numpy()
    faces = "".join(f"f {a} {b} {c}\n" for a, b, c in (model.faces.numpy() + 1))
    names = [f"frame_{f:06d}.obj" for f in range(len(verts))]
    with staged_folder(folder, OBJ_FRAME.fullmatch) as staging:
        for name, v in zip(names, verts):
            (staging / name).write_text("".join(f"v {x:.6f} {y:.6f} {z:.6f}\n" for x, y, z in v) + faces)
    return [folder / name for name in names]
