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


def _root_rows(text: str) -> tuple[np.ndarray, float, int]:
    """The root's (x, y, z) of every frame, the frame time and the frame count of a BVH text."""
    lines = text.splitlines()
    at = lines.index("MOTION")
    count, frame_time = int(lines[at + 1].split()[1]), float(lines[at + 2].split()[2])
    return np.array([[float(v) for v in line.split()[:3]] for line in lines[at + 3 :] if line]), frame_time, count


def test_in_place_ground_and_fps_do_what_they_say(tmp_path):
    motion = demo_motion(num_frames=6)
    save_motion(tmp_path / "m.npz", motion)
    args = [str(tmp_path / "m.npz"), "--format", "bvh", "--skeleton", "mixamo"]
    for name, extra in (("plain", []), ("place", ["--in-place"]), ("ground", ["--ground"]), ("fps", ["--fps", "8"])):
        assert main(args + ["--out", str(tmp_path / f"{name}.bvh")] + extra) == 0
    plain, frame_time, count = _root_rows((tmp_path / "plain.bvh").read_text())
    assert (count, frame_time) == (6, 0.0625) and np.ptp(plain[:, 0]) > 0.1  # the demo sways along x
    place, _, _ = _root_rows((tmp_path / "place.bvh").read_text())
    np.testing.assert_allclose(place[:, [0, 2]], 0.0, atol=1e-6)  # no horizontal root motion
    np.testing.assert_allclose(place[:, 1], plain[:, 1], atol=1e-6)  # the height stays
    model = load_body_model(None)
    lowest = (camera_vertices(model, motion).vertices.double().numpy() @ TO_WORLD.T)[..., 1].min()  # a foot
    ground, _, _ = _root_rows((tmp_path / "ground.bvh").read_text())
    np.testing.assert_allclose(ground - plain, np.tile([0.0, -lowest, 0.0], (6, 1)), atol=2e-6)
    fps, frame_time, count = _root_rows((tmp_path / "fps.bvh").read_text())
    assert (count, frame_time) == (3, 0.125)  # 6 frames at 16 fps -> 3 at 8 over the same time
    np.testing.assert_allclose(fps, plain[::2], atol=1e-6)
    assert "ROOT mixamorig:Hips" in (tmp_path / "fps.bvh").read_text()
    # OBJ meshes follow the clip options too: on the ground, the lowest vertex of the clip is at y = 0
    assert main([str(tmp_path / "m.npz"), "--format", "obj", "--out", str(tmp_path / "objs"), "--ground"]) == 0
    ys = [
        float(line.split()[2])
        for f in sorted((tmp_path / "objs").iterdir())
        for line in f.read_text().splitlines()
        if line.startswith("v ")
    ]
    assert min(ys) == pytest.approx(0.0, abs=2e-6)


def test_fbx_without_bpy_says_how_to_get_it(tmp_path, monkeypatch, caplog):
    import sys

    from comovi_core.errors import CoMoViError
    from comovi_core.export.fbx import write_fbx

    monkeypatch.setitem(sys.modules, "bpy", None)  # import bpy raises ImportError, installed or not
    motion = demo_motion(num_frames=2)
    with pytest.raises(CoMoViError, match="pip install bpy"):
        write_fbx(tmp_path / "clip.fbx", load_body_model(None), motion)
    save_motion(tmp_path / "m.npz", motion)
    assert main([str(tmp_path / "m.npz"), "--format", "fbx", "--out", str(tmp_path / "clip.fbx")]) == 2
    assert "pip install bpy" in caplog.text and not (tmp_path / "clip.fbx").exists()
    assert main([str(tmp_path / "m.npz"), "--format", "fbx", "--out", str(tmp_path / "clip.glb")]) == 2
    assert "must end in .fbx" in caplog.text
