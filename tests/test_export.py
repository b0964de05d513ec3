"""BVH and OBJ export: forward kinematics of the written BVH reproduces SMPL's joints."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from comovi_core.body.mannequin import demo_motion
from comovi_core.body.motion_file import save_motion
from comovi_core.body.parts import SMPL_JOINT_NAMES
from comovi_core.body.smpl import camera_vertices, load_body_model
from comovi_core.export.cli import main

TO_WORLD = np.diag([1.0, -1.0, -1.0])


def _rot(axis: str, degrees: float) -> np.ndarray:
    a = np.radians(degrees)
    c, s = np.cos(a), np.sin(a)
    return {
        "X": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]),
        "Y": np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
        "Z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]),
    }[axis]


def _bvh_joint_positions(text: str) -> tuple[list[str], np.ndarray]:
    """A small independent BVH reader + forward kinematics -> joint names, (frames, joints, 3) positions."""
    lines = [line.strip() for line in text.splitlines()]
    motion_at = lines.index("MOTION")
    names, parents, offsets, channels = [], [], [], []
    stack, in_end_site = [], False  # stack of open joints
    for line in lines[:motion_at]:
        head, *rest = line.split()
        if head in ("ROOT", "JOINT"):
            parents.append(stack[-1] if stack else -1)
            names.append(rest[0])
            stack.append(len(names) - 1)
        elif head == "End":
            in_end_site = True
        elif head == "OFFSET" and not in_end_site:
            offsets.append(np.array([float(v) for v in rest]))
        elif head == "CHANNELS":
            channels.append(rest[1:])
        elif head == "}":
            if in_end_site:
                in_end_site = False
            else:
                stack.pop()
    frames = [[float(v) for v in line.split()] for line in lines[motion_at + 3 :] if line]
    out = np.zeros((len(frames), len(names), 3))
    for f, values in enumerate(frames):
        k, world = 0, {}
        for j, chans in enumerate(channels):
            position, rotation = np.zeros(3), np.eye(3)
            for ch in chans:
                if ch.endswith("position"):
                    position["XYZ".index(ch[0])] = values[k]
                else:
                    rotation = rotation @ _rot(ch[0], values[k])
                k += 1
            p = parents[j]
            out[f, j] = position + offsets[j] if p < 0 else out[f, p] + world[p] @ offsets[j]
            world[j] = rotation if p < 0 else world[p] @ rotation
    return names, out


def test_bvh_forward_kinematics_matches_smpl_joints(tmp_path):
    motion = demo_motion(num_frames=6)
    motion.betas = np.linspace(-1, 1, 10).astype(np.float32)
    save_motion(tmp_path / "m.npz", motion)
    assert main([str(tmp_path / "m.npz"), "--format", "bvh", "--out", str(tmp_path / "clip.bvh")]) == 0
    text = (tmp_path / "clip.bvh").read_text()
    assert "Frames: 6" in text and "Frame Time: 0.062500" in text and text.count("JOINT") == 23
    names, positions = _bvh_joint_positions(text)
    model = load_body_model(None)
    joints = camera_vertices(model, motion).joints.double().numpy() @ TO_WORLD.T  # (T, 24, 3) y-up world
    order = [SMPL_JOINT_NAMES.index(n) for n in names]  # the BVH lists joints depth-first
    np.testing.assert_allclose(positions, joints[:, order], atol=1e-4)


def test_obj_sequence_and_bad_output(tmp_path, caplog):
    motion = demo_motion(num_frames=2)
    save_motion(tmp_path / "m.npz", motion)
    assert main([str(tmp_path / "m.npz"), "--format", "obj", "--out", str(tmp_path / "objs")]) == 0
    files = sorted((tmp_path / "objs").iterdir())
    assert [f.name for f in files] == ["frame_000000.obj", "frame_000001.obj"]
    lines = files[1].read_text().splitlines()
    verts = np.array([[float(v) for v in line.split()[1:]] for line in lines if line.startswith("v ")])
    model = load_body_model(None)
    expect = camera_vertices(model, motion).vertices[1].double().numpy() @ TO_WORLD.T
    np.testing.assert_allclose(verts, expect, atol=2e-6)
    faces = [line for line in lines if line.startswith("f ")]
    assert len(faces) == model.faces.shape[0] and faces[0] == "f " + " ".join(str(int(i) + 1) for i in model.faces[0])
    assert main([str(tmp_path / "m.npz"), "--format", "bvh", "--out", str(tmp_path / "x.txt")]) == 2
    assert "must end in .bvh" in caplog.text and not (tmp_path / "x.txt").exists()
    save_motion(tmp_path / "long.npz", demo_motion(num_frames=4))
    assert main([str(tmp_path / "long.npz"), "--format", "obj", "--out", str(tmp_path / "seq")]) == 0
    assert main([str(tmp_path / "m.npz"), "--format", "obj", "--out", str(tmp_path / "seq")]) == 0
    assert sorted(f.name for f in (tmp_path / "seq").iterdir()) == [
        "frame_000000.obj",
        "frame_000001.obj",
    ]  # no stale frames
    assert main([str(tmp_path / "m.npz"), "--format", "bvh", "--out", str(tmp_path / "m.npz" / "a.bvh")]) == 2
    assert "m.npz is a file, not a folder" in caplog.text
    from comovi_core.errors import CoMoViError

    with pytest.raises(CoMoViError, match="which is a file"):
        save_motion(tmp_path / "m.npz" / "inner" / "x.npz", motion)
    torch.manual_seed(0)
