"""Write the built-in example mocap file, ``example_motions/walk_amass.npz``: our own procedural walk (no third-party
mocap), in the AMASS / SMPL-H layout the Load Motion File node reads: Z-up, 30 fps, 156 pose values per frame
(hands flat), 16 betas (zero: the stand-in's own shape).

    python tools/make_example_motions.py            # rewrites the file; the same bytes of arrays every time
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from comovi_core.body.smpl import BodyModel, load_body_model  # noqa: E402  (after ROOT joins sys.path)
from comovi_core.body.world import WorldMotion, on_ground, rigid_transform  # noqa: E402
from comovi_core.mocap.amass import AMASS_TO_WORLD  # noqa: E402

EXAMPLE = ROOT / "example_motions" / "walk_amass.npz"
FPS = 30.0
PERIOD = 1.1  # seconds per walk cycle (two steps)
CYCLES = 2
SPEED = 1.1  # metres per second, along the way the body faces


def _rotvec(*turns: tuple[str, np.ndarray]) -> np.ndarray:
    """(T, 3) axis-angle of the product of rotations about body axes, applied right to left."""
    from scipy.spatial.transform import Rotation

    out = Rotation.identity(len(turns[0][1]))
    for axis, angle in turns:
        out = out * Rotation.from_euler(axis, angle[:, None])
    return out.as_rotvec()


def walk_world(model: BodyModel) -> WorldMotion:
    """A walk in the y-up world (SMPL joint order; body axes x = its left, y = up, z = forward), feet on y = 0."""
    t = np.arange(int(round(CYCLES * PERIOD * FPS))) / FPS
    phase = 2 * np.pi * t / PERIOD
    sin, cos = np.sin(phase), np.cos(phase)
    pose = np.zeros((len(t), 23, 3))
    pose[:, 0, 0], pose[:, 1, 0] = -0.45 * sin, 0.45 * sin  # hips: negative x swings the leg forward
    pose[:, 3, 0] = 0.1 + 0.7 * np.maximum(0, cos) ** 2  # knees bend in the swing
    pose[:, 4, 0] = 0.1 + 0.7 * np.maximum(0, -cos) ** 2
    pose[:, 6, 0], pose[:, 7, 0] = 0.15 * sin, -0.15 * sin  # ankles
    pose[:, 2, 1] = -0.08 * sin  # spine turns against the pelvis
    pose[:, 15] = _rotvec(("x", 0.35 * sin), ("z", np.full_like(t, -1.25)))  # left arm down, swinging
    pose[:, 16] = _rotvec(("x", -0.35 * sin), ("z", np.full_like(t, 1.25)))
    pose[:, 17, 1], pose[:, 18, 1] = -0.3, 0.3  # elbows a little bent
    orient = _rotvec(("y", 0.08 * sin))
    transl = np.stack([np.zeros_like(t), 0.02 * np.cos(2 * phase), SPEED * t], axis=1)
    world = WorldMotion(orient, pose.reshape(len(t), 69), np.zeros(10), transl, FPS, "neutral", "procedural walk")
    return on_ground(model, world)


def amass_arrays(model: BodyModel, world: WorldMotion) -> dict[str, np.ndarray]:
    """``world`` in AMASS's Z-up layout (SMPL-H poses with flat hands, 16 betas)."""
    orient, trans = rigid_transform(model, world.global_orient, world.transl, world.betas, AMASS_TO_WORLD.T)
    poses = np.zeros((world.num_frames, 156))
    poses[:, :3], poses[:, 3:66] = orient, world.body_pose[:, :63]
    return {
        "poses": poses.astype(np.float32),
        "trans": trans.astype(np.float32),
        "betas": np.pad(world.betas, (0, 6)).astype(np.float32),
        "mocap_framerate": np.float64(world.fps),
        "gender": np.str_(world.gender),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=EXAMPLE, help="where to write the .npz")
    args = parser.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    model = load_body_model()  # the stand-in: the example is made for its skeleton
    np.savez_compressed(args.out, **amass_arrays(model, walk_world(model)))


if __name__ == "__main__":
    main()
