"""Check the FBX export in a real Blender: every bone of the re-imported FBX sits where our skeleton puts it.

Needs Blender's Python module, which CI does not install (``pip install bpy``; bpy 4.2 is built for Python 3.11):

    python tools/check_fbx.py [--frames 9] [--fps 0]

For each skeleton (smpl, mixamo, ue5, vrm): the stand-in demo motion with a few large extra joint turns is written
with ``export.fbx.write_fbx``, imported into an empty Blender scene with Blender's FBX importer, and every bone's
head is compared, frame by frame, with the bone positions of ``export.skeleton.export_animation`` (the same
animation the BVH and glb writers write). Prints the bone count, frame count, the largest distance (mm) and
whether the skinned mesh came through; exits 1 if any bone is more than 1 mm off.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from comovi_core.body.mannequin import demo_motion  # noqa: E402
from comovi_core.body.smpl import load_body_model  # noqa: E402
from comovi_core.export.fbx import write_fbx  # noqa: E402
from comovi_core.export.skeleton import ExportOptions, export_animation  # noqa: E402
from comovi_core.retarget.animation import forward_kinematics  # noqa: E402
from comovi_core.retarget.skeletons import EXPORT_SKELETONS  # noqa: E402

BLENDER_FROM_Y_UP = np.array([[1.0, 0, 0], [0, 0, -1.0], [0, 1.0, 0]])  # (x, y, z) y-up -> (x, -z, y) z-up


def check(skeleton: str, frames: int, fps: float, folder: Path) -> float:
    import bpy

    body = load_body_model()
    motion = demo_motion(num_frames=frames)
    rng = np.random.default_rng(0)
    motion.body_pose = motion.body_pose + rng.normal(0, 0.4, motion.body_pose.shape).astype(np.float32)
    options = ExportOptions(skeleton=skeleton, fps=fps)
    path = write_fbx(folder / f"{skeleton}.fbx", body, motion, options)
    animation = export_animation(body, motion, options)
    _, want = forward_kinematics(animation)  # (T, J, 3) y-up world, metres
    names = animation.names

    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.import_scene.fbx(filepath=str(path))
    armature = next(o for o in bpy.data.objects if o.type == "ARMATURE")
    meshes = [o for o in bpy.data.objects if o.type == "MESH"]
    start, end = (int(v) for v in armature.animation_data.action.frame_range)
    worst = 0.0
    for t in range(animation.num_frames):
        bpy.context.scene.frame_set(start + t)
        for b, name in enumerate(names):
            head = np.array(armature.matrix_world @ armature.pose.bones[name].head)
            worst = max(worst, float(np.linalg.norm(head - BLENDER_FROM_Y_UP @ want[t, b])))
    print(
        f"{skeleton:7s} bones {len(armature.data.bones):2d}/{len(names):2d}  frames {end - start + 1}/"
        f"{animation.num_frames}  skinned meshes {[len(m.data.vertices) for m in meshes]}  "
        f"largest bone error {worst * 1000:.3f} mm"
    )
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=9)
    parser.add_argument("--fps", type=float, default=0.0, help="resample the export (0 keeps the motion's 16 fps)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        worst = max(check(s, args.frames, args.fps, Path(folder)) for s in EXPORT_SKELETONS)
    sys.exit(0 if worst <= 1e-3 else 1)


if __name__ == "__main__":
    main()
