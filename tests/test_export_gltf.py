"""glTF (.glb) export: read back with an independent reader and skinned by hand, it reproduces smplx's mesh."""

from __future__ import annotations

import copy
import json
import struct

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from comovi_core.body.mannequin import demo_motion
from comovi_core.body.motion_file import SMPLMotion
from comovi_core.body.smpl import camera_vertices, load_body_model
from comovi_core.export.gltf import write_glb
from comovi_core.export.skeleton import CAMERA_TO_WORLD

COMPONENTS = {5126: np.float32, 5125: np.uint32, 5123: np.uint16}
WIDTH = {"SCALAR": 1, "VEC3": 3, "VEC4": 4, "MAT4": 16}


def _read_glb(path):
    data = path.read_bytes()
    magic, version, total = struct.unpack_from("<4sII", data, 0)
    assert (magic, version, total) == (b"glTF", 2, len(data))
    json_len, json_kind = struct.unpack_from("<I4s", data, 12)
    doc = json.loads(data[20 : 20 + json_len])
    bin_len, bin_kind = struct.unpack_from("<I4s", data, 20 + json_len)
    assert (json_kind, bin_kind) == (b"JSON", b"BIN\0") and json_len % 4 == 0 and bin_len % 4 == 0
    binary = data[28 + json_len : 28 + json_len + bin_len]

    def accessor(i):
        a = doc["accessors"][i]
        view = doc["bufferViews"][a["bufferView"]]
        assert view["byteOffset"] % 4 == 0
        arr = np.frombuffer(binary, COMPONENTS[a["componentType"]], a["count"] * WIDTH[a["type"]], view["byteOffset"])
        return arr.reshape(a["count"], WIDTH[a["type"]])

    return doc, accessor


def _node_world(doc, accessor, frame) -> dict[int, np.ndarray]:
    """Node index -> its (4, 4) world matrix at key ``frame`` of the animation (node TRS hierarchy)."""
    nodes = [dict(n) for n in doc["nodes"]]
    for channel in doc["animations"][0]["channels"]:
        sampler = doc["animations"][0]["samplers"][channel["sampler"]]
        nodes[channel["target"]["node"]][channel["target"]["path"]] = accessor(sampler["output"])[frame].tolist()
    world = {}

    def visit(i, parent):
        n = nodes[i]
        m = np.eye(4)
        m[:3, :3] = Rotation.from_quat(n.get("rotation", [0, 0, 0, 1])).as_matrix()
        m[:3, 3] = n.get("translation", [0, 0, 0])
        world[i] = parent @ m
        for c in n.get("children", []):
            visit(c, world[i])

    for root in doc["scenes"][0]["nodes"]:
        visit(root, np.eye(4))
    return world


def _skinned(doc, accessor, frame):
    """Evaluate the glTF scene at key ``frame``: node TRS hierarchy -> joint matrices -> linear blend skinning."""
    world = _node_world(doc, accessor, frame)
    skin = doc["skins"][0]
    ibm = accessor(skin["inverseBindMatrices"]).reshape(-1, 4, 4).transpose(0, 2, 1)  # stored column-major
    joint_mats = np.stack([world[j] @ ibm[k] for k, j in enumerate(skin["joints"])])
    prim = doc["meshes"][0]["primitives"][0]
    rest = accessor(prim["attributes"]["POSITION"]).astype(np.float64)
    pos = np.concatenate([rest, np.ones((rest.shape[0], 1))], 1)
    out = np.zeros((pos.shape[0], 3))
    s = 0
    while f"JOINTS_{s}" in prim["attributes"]:
        joints, weights = accessor(prim["attributes"][f"JOINTS_{s}"]), accessor(prim["attributes"][f"WEIGHTS_{s}"])
        for k in range(4):
            out += weights[:, k : k + 1] * np.einsum("vij,vj->vi", joint_mats[joints[:, k].astype(int)], pos)[:, :3]
        s += 1
    return out


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    body = load_body_model(None)
    demo = demo_motion(num_frames=6, height=64, width=64)
    betas = np.linspace(-1.0, 1.5, 10).astype(np.float32)
    motion = SMPLMotion(demo.global_orient, demo.body_pose, betas, demo.transl, demo.fps, demo.camera)
    path = write_glb(tmp_path_factory.mktemp("glb") / "clip.glb", body, motion)
    return body, motion, path


def test_glb_reproduces_smplx_without_pose_blend_shapes(scene):
    body, motion, path = scene
    doc, accessor = _read_glb(path)
    reference = copy.deepcopy(body)
    reference.smpl.posedirs.zero_()  # glTF skinning has no pose-corrective blend shapes
    with torch.no_grad():
        want = camera_vertices(reference, motion).vertices.double().numpy() @ CAMERA_TO_WORLD.T
        with_blend = camera_vertices(body, motion).vertices.double().numpy() @ CAMERA_TO_WORLD.T
    for frame in (0, 3, 5):
        got = _skinned(doc, accessor, frame)
        assert np.abs(got - want[frame]).max() < 1e-4
        assert np.abs(got - with_blend[frame]).max() < 0.01  # what the missing blend shapes cost on this body
    times = accessor(doc["animations"][0]["samplers"][0]["input"])[:, 0]
    np.testing.assert_allclose(times, np.arange(6) / motion.fps, atol=1e-6)
    assert [n["name"] for n in doc["nodes"][:3]] == ["pelvis", "left_hip", "right_hip"]
    assert len(doc["animations"][0]["channels"]) == 25 and doc["skins"][0]["joints"] == list(range(24))


def test_glb_loads_in_trimesh_as_one_mesh(scene):
    import trimesh  # a second, independent glTF reader

    body, _, path = scene
    loaded = trimesh.load(path, force="mesh", process=False)
    assert loaded.vertices.shape == (6890, 3) and loaded.faces.shape == tuple(body.faces.shape)


def test_cli_and_node_write_glb(scene, tmp_path, caplog):
    from comovi_core.body.motion_file import save_motion
    from comovi_core.export.cli import main

    body, motion, reference = scene
    save_motion(tmp_path / "m.npz", motion)
    assert main([str(tmp_path / "m.npz"), "--format", "glb", "--out", str(tmp_path / "clip.glb")]) == 0
    assert (tmp_path / "clip.glb").read_bytes() == reference.read_bytes()  # deterministic, same as the library call
    assert main([str(tmp_path / "m.npz"), "--format", "glb", "--out", str(tmp_path / "clip.gltf")]) == 2
    assert "must end in .glb" in caplog.text and not (tmp_path / "clip.gltf").exists()


@pytest.mark.parametrize("skeleton", ["ue5", "mixamo", "vrm"])
def test_retargeted_glb_bones_land_on_the_smpl_joints_and_skin_the_body(scene, skeleton, tmp_path):
    from comovi_core.export.skeleton import ExportOptions

    body, motion, _ = scene
    path = write_glb(tmp_path / f"{skeleton}.glb", body, motion, ExportOptions(skeleton=skeleton))
    doc, accessor = _read_glb(path)
    names = [n["name"] for n in doc["nodes"]]
    carried = {  # bone -> SMPL joint index, a few per skeleton
        "ue5": {"pelvis": 0, "spine_03": 9, "neck_01": 12, "upperarm_l": 16, "hand_r": 21, "calf_l": 4, "ball_r": 11},
        "mixamo": {"mixamorig:Hips": 0, "mixamorig:LeftForeArm": 18, "mixamorig:RightToeBase": 11},
        "vrm": {"hips": 0, "upperChest": 9, "leftLowerArm": 18, "rightFoot": 8, "head": 15},
    }[skeleton]
    assert set(carried) <= set(names) and names[-1] == "body"
    if skeleton == "ue5":
        assert names[:2] == ["root", "pelvis"] and {"spine_04", "spine_05", "neck_02"} <= set(names)
    reference = copy.deepcopy(body)
    reference.smpl.posedirs.zero_()
    with torch.no_grad():
        joints = camera_vertices(body, motion).joints.double().numpy() @ CAMERA_TO_WORLD.T
        want = camera_vertices(reference, motion).vertices.double().numpy() @ CAMERA_TO_WORLD.T
    for frame in (0, 3, 5):
        world = _node_world(doc, accessor, frame)
        for bone, joint in carried.items():
            assert np.abs(world[names.index(bone)][:3, 3] - joints[frame, joint]).max() < 1e-3  # within 1 mm
        assert np.abs(_skinned(doc, accessor, frame) - want[frame]).max() < 1e-4  # the same skin as SMPL's
    import trimesh

    assert trimesh.load(path, force="mesh", process=False).vertices.shape == (6890, 3)
