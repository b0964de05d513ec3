"""The y-up world frame: moving a SMPL body rigidly by its root parameters equals moving its vertices."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from comovi_core.body.mannequin import demo_motion
from comovi_core.body.parts import PART_NAMES
from comovi_core.body.smpl import camera_vertices, load_body_model
from comovi_core.body.world import (
    CAMERA_TO_WORLD,
    FOOT_PARTS,
    WorldMotion,
    in_place,
    motion_to_world,
    on_ground,
    resample,
    rigid_transform,
)
from comovi_core.errors import CoMoViError


def _world_vertices(body, world: WorldMotion) -> np.ndarray:
    with torch.no_grad():
        out = body(
            torch.as_tensor(world.global_orient, dtype=torch.float32),
            torch.as_tensor(world.body_pose, dtype=torch.float32),
            torch.as_tensor(world.betas, dtype=torch.float32),
        )
    return out.vertices.double().numpy() + world.transl[:, None]


def test_a_camera_motion_in_the_world_has_the_turned_vertices():
    body = load_body_model()  # the stand-in mannequin: same kinematics as SMPL
    motion = demo_motion(num_frames=5)
    motion.betas = np.linspace(-1, 1, 10).astype(np.float32)
    want = camera_vertices(body, motion).vertices.double().numpy() @ CAMERA_TO_WORLD.T
    got = _world_vertices(body, motion_to_world(body, motion))
    assert np.abs(got - want).max() < 2e-5  # metres (float32 kinematics)


def test_a_rigid_transform_moves_the_vertices_by_the_same_transform():
    body = load_body_model()
    motion = demo_motion(num_frames=3)
    world = motion_to_world(body, motion)
    turn = Rotation.from_euler("yx", [70, -20], degrees=True).as_matrix()
    offset = np.array([0.3, -1.2, 2.0])
    orient, transl = rigid_transform(body, world.global_orient, world.transl, world.betas, turn, offset)
    moved = WorldMotion(orient, world.body_pose, world.betas, transl, world.fps)
    want = _world_vertices(body, world) @ turn.T + offset
    assert np.abs(_world_vertices(body, moved) - want).max() < 2e-5


@pytest.mark.parametrize(
    "change, message",
    [
        ({"body_pose": np.full((2, 69), np.nan)}, "body_pose in take.bvh contains NaN"),
        ({"transl": np.zeros((3, 3))}, "transl in take.bvh must have shape (2, 3)"),
        ({"global_orient": np.zeros((0, 3))}, "T >= 1 frames"),
        ({"fps": 0.0}, "fps in take.bvh must be a positive number"),
    ],
)
def test_a_bad_world_motion_says_what_is_wrong(change, message):
    fields = dict(
        global_orient=np.zeros((2, 3)),
        body_pose=np.zeros((2, 69)),
        betas=np.zeros(10),
        transl=np.zeros((2, 3)),
        fps=30.0,
        source="take.bvh",
    )
    fields.update(change)
    with pytest.raises(CoMoViError, match=message.replace("(", r"\(").replace(")", r"\)")):
        WorldMotion(**fields)


def _turning(fps: float, seconds: float) -> WorldMotion:
    """A body turning about y at 90 degrees per second and walking along x at 1 m/s: known at any time."""
    t = np.arange(int(round(seconds * fps)) + 1) / fps
    orient = np.stack([np.zeros_like(t), np.radians(90) * t, np.zeros_like(t)], axis=1)
    pose = np.zeros((len(t), 69))
    pose[:, 3 * 3 + 0] = 0.5 * t  # left knee (joint 4) bends steadily: 0.5 rad/s about x
    transl = np.stack([t, np.zeros_like(t), np.zeros_like(t)], axis=1)
    return WorldMotion(orient, pose, np.zeros(10), transl, fps)


def test_resampling_a_uniform_motion_gives_the_motion_at_the_new_times():
    source = _turning(fps=30, seconds=2)
    out = resample(source, 24)
    want = _turning(fps=24, seconds=2)
    assert out.num_frames == want.num_frames == 49 and out.fps == 24
    assert np.abs(out.global_orient - want.global_orient).max() < 1e-9
    assert np.abs(out.body_pose - want.body_pose).max() < 1e-9
    assert np.abs(out.transl - want.transl).max() < 1e-12


def test_resampling_takes_the_short_way_round():
    orient = np.array([[0, np.radians(170), 0], [0, np.radians(-170), 0]])  # 20 degrees apart through 180
    world = WorldMotion(orient, np.zeros((2, 69)), np.zeros(10), np.zeros((2, 3)), fps=1)
    out = resample(world, 2)
    mid = Rotation.from_rotvec(out.global_orient[1])
    assert out.num_frames == 3
    assert (mid.inv() * Rotation.from_euler("y", 180, degrees=True)).magnitude() < 1e-9  # not through 0 degrees


def test_in_place_keeps_the_root_over_the_origin_and_on_ground_stands_the_lowest_foot_on_y_0():
    body = load_body_model()
    world = motion_to_world(body, demo_motion(num_frames=6))
    world.transl = world.transl + np.linspace(0, 1, 6)[:, None] * np.array([2.0, 0.3, -1.0])  # walks and rises
    still = in_place(body, world)
    with torch.no_grad():
        rest_root = body(torch.zeros(1, 3), torch.zeros(1, 69), torch.as_tensor(world.betas)).joints[0, 0].numpy()
    root = rest_root + still.transl
    assert np.abs(root[:, [0, 2]]).max() < 1e-6
    assert np.array_equal(still.transl[:, 1], world.transl[:, 1])  # the height is kept

    grounded = on_ground(body, world)
    verts = _world_vertices(body, grounded)
    feet = torch.isin(body.part_ids, torch.tensor([PART_NAMES.index(p) for p in FOOT_PARTS])).numpy()
    assert abs(verts[:, feet, 1].min()) < 1e-6
    assert np.allclose(grounded.transl[:, [0, 2]], world.transl[:, [0, 2]])
    lift = grounded.transl[:, 1] - world.transl[:, 1]
    assert np.allclose(lift, lift[0])  # one shift for the whole clip
