"""Motion in from mocap files: AMASS / SMPL-H .npz into the y-up world, placed in front of a camera, the Load Motion
File node and its built-in example.

The acceptance: an AMASS clip read by us and posed by our body model (the synthetic SMPL of tests/synthetic_smpl.py)
has the body joints smplx's own SMPL-H gives for the same clip on the same synthetic body in SMPL-H's 52-joint layout,
within 1 mm, in the world and after placement in the camera.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest
import smplx
import torch
from scipy.spatial.transform import Rotation
from smplx.utils import Struct
from synthetic_smpl import smplh_like_arrays, write_npz

from comovi_core.body.mannequin import demo_motion
from comovi_core.body.motion_file import load_motion, save_motion
from comovi_core.body.smpl import camera_vertices, load_body_model
from comovi_core.body.world import WorldMotion, on_ground, root_joint
from comovi_core.errors import CoMoViError
from comovi_core.mocap.amass import AMASS_TO_WORLD, read_amass
from comovi_core.mocap.load import load_motion_file
from comovi_core.mocap.placement import place_in_front_of_camera, view_transform

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "example_motions" / "walk_amass.npz"
MM = 1e-3


@pytest.fixture(scope="module")
def body(tmp_path_factory):
    """Our body model of the synthetic SMPL, loaded from a SMPL-format file like a user's SMPL_NEUTRAL.npz."""
    return load_body_model(write_npz(tmp_path_factory.mktemp("smpl") / "SMPL_NEUTRAL.npz"))


@pytest.fixture(scope="module")
def smplh():
    """smplx's SMPL-H on the same synthetic body (52 joints, flat hand mean, no hand PCA)."""
    with contextlib.redirect_stdout(io.StringIO()):  # smplx prints a note about 10 shape components
        return smplx.SMPLH(
            model_path="synthetic", data_struct=Struct(**smplh_like_arrays()), use_pca=False, flat_hand_mean=True
        )


def _clip(frames: int = 6, width: int = 156, seed: int = 0) -> dict:
    """An AMASS-like clip: random poses around a body standing upright in the Z-up world."""
    rng = np.random.default_rng(seed)
    poses = rng.normal(0, 0.3, (frames, width))
    poses[:, :3] = (
        Rotation.from_euler("z", rng.uniform(-3, 3, (frames, 1))) * Rotation.from_euler("x", 90, degrees=True)
    ).as_rotvec()
    trans = np.stack([rng.uniform(-1, 1, frames), rng.uniform(-1, 1, frames), 0.95 + rng.normal(0, 0.02, frames)], 1)
    return {
        "poses": poses,
        "trans": trans,
        "betas": rng.normal(0, 1, 16),
        "mocap_framerate": np.float64(120.0),
        "gender": np.array("female"),
    }


def _write(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


def _world_joints(model, world: WorldMotion) -> np.ndarray:
    with torch.no_grad():
        out = model(world.global_orient, world.body_pose, world.betas)
    return out.joints.double().numpy() + world.transl[:, None]


def _smplh_joints(smplh, clip: dict) -> np.ndarray:
    """(T, 22, 3) SMPL-H's body joints for the clip, turned into our y-up world."""
    p = torch.as_tensor(clip["poses"], dtype=torch.float32)
    with torch.no_grad():
        out = smplh(
            betas=torch.as_tensor(clip["betas"][:10], dtype=torch.float32).expand(len(p), -1),
            global_orient=p[:, :3],
            body_pose=p[:, 3:66],
            left_hand_pose=p[:, 66:111],
            right_hand_pose=p[:, 111:156],
            transl=torch.as_tensor(clip["trans"], dtype=torch.float32),
        )
    return out.joints[:, :22].double().numpy() @ AMASS_TO_WORLD.T


def test_amass_body_joints_match_smplx_smplh_in_the_world_and_the_camera(body, smplh, tmp_path, caplog):
    clip = _clip()
    world = read_amass(_write(tmp_path / "clip_poses.npz", **clip), body)
    assert world.fps == 120.0 and world.gender == "female" and world.num_frames == 6
    assert np.array_equal(world.betas, clip["betas"][:10]) and "the other 6 are dropped" in caplog.text
    assert np.all(world.body_pose[:, 63:] == 0)  # SMPL's hand joints 22 and 23: flat
    want = _smplh_joints(smplh, clip)
    assert np.abs(_world_joints(body, world)[:, :22] - want).max() < MM

    options = dict(distance=4.0, height=1.2, yaw=30.0)
    placed = place_in_front_of_camera(body, world, image_size=(224, 384), fov_degrees=55.0, **options)
    grounded = on_ground(body, world)
    rotation, offset = view_transform(body, grounded, **options)
    want_camera = (want + (grounded.transl - world.transl)[:, None]) @ rotation.T + offset
    got_camera = camera_vertices(body, placed).joints[:, :22].double()
    assert np.abs(got_camera.numpy() - want_camera).max() < MM
    pixels = placed.camera.project(got_camera) - placed.camera.project(torch.as_tensor(want_camera))
    assert pixels.abs().max() < 0.1


def test_smpl_poses_of_72_values_keep_their_own_hand_joints(body, tmp_path):
    clip = _clip(frames=3, width=72)
    clip["betas"] = clip["betas"][:10]
    world = read_amass(_write(tmp_path / "smpl.npz", **clip), body)
    assert np.allclose(world.body_pose, clip["poses"][:, 3:])
    with torch.no_grad():  # the same body posed in the Z-up file, then turned: the world joints
        out = body(clip["poses"][:, :3], clip["poses"][:, 3:], clip["betas"])
    want = (out.joints.double().numpy() + clip["trans"][:, None]) @ AMASS_TO_WORLD.T
    assert np.abs(_world_joints(body, world) - want).max() < MM


@pytest.mark.parametrize("width", [165, 66])
def test_smplx_and_body_only_poses_give_the_smplh_body(body, tmp_path, width):
    smplh_clip = _clip(frames=3)
    clip = {**smplh_clip, "poses": np.concatenate([smplh_clip["poses"][:, :66], np.ones((3, width - 66))], axis=1)}
    want = read_amass(_write(tmp_path / "smplh.npz", **smplh_clip), body)
    got = read_amass(_write(tmp_path / f"w{width}.npz", **clip), body)
    assert np.array_equal(got.body_pose, want.body_pose) and np.array_equal(got.transl, want.transl)


def test_shape_frame_rate_and_gender_variants(body, tmp_path, caplog):
    clip = _clip(frames=2)
    del clip["mocap_framerate"]
    clip["mocap_frame_rate"], clip["betas"], clip["gender"] = np.float64(59.94), clip["betas"][:8], np.array(b"male")
    world = read_amass(_write(tmp_path / "x.npz", **clip), body)
    assert world.fps == 59.94 and world.gender == "male"
    assert np.array_equal(world.betas, np.r_[clip["betas"], 0.0, 0.0])
    clip["betas"] = np.r_[np.ones(10), np.zeros(6)]  # 16 with the extra 6 zero: nothing is lost, no warning
    read_amass(_write(tmp_path / "y.npz", **clip), body)
    assert "dropped" not in caplog.text


def test_a_body_upright_in_amass_stands_upright_in_our_world(body, tmp_path):
    clip = _clip(frames=1)
    clip["poses"][:] = 0
    clip["poses"][:, 0] = math.pi / 2  # AMASS: the body's up (its y) turned onto the world's z
    joints = _world_joints(body, read_amass(_write(tmp_path / "stand.npz", **clip), body))[0]
    assert joints[15, 1] - joints[0, 1] > 0.5  # head above pelvis, in y
    assert np.abs(joints[15, [0, 2]] - joints[0, [0, 2]]).max() < 0.05


def _facing_in_camera(motion, frame: int = 0) -> np.ndarray:
    return Rotation.from_rotvec(motion.global_orient[frame]).as_matrix()[:, 2]  # SMPL faces +z in its own frame


def test_placement_distance_height_yaw_and_fps(body):
    world = read_amass(EXAMPLE, body)
    assert world.fps == 30.0 and world.num_frames == 66
    motion = place_in_front_of_camera(body, world, distance=3.0, height=1.3, image_size=(256, 320), fov_degrees=40)
    pelvis = root_joint(body, motion.betas) + motion.transl[0]
    assert np.allclose(pelvis[[0, 2]], [0.0, 3.0], atol=1e-6)  # straight ahead, 3 m in front
    feet = camera_vertices(body, motion).vertices[..., 1].max()  # y points down: the lowest point of the clip
    assert abs(float(feet) - 1.3) < 1e-5  # the ground 1.3 m below the camera
    assert np.allclose(_facing_in_camera(motion), [0, 0, -1], atol=0.02)  # yaw 0: facing the camera
    assert motion.camera.image_size == (256, 320) and motion.camera.principal_point == (160.0, 128.0)
    assert math.isclose(motion.camera.focal_length[1], 128 / math.tan(math.radians(20)))

    turned = place_in_front_of_camera(body, world, distance=3.0, height=1.3, yaw=90.0)
    assert np.allclose(_facing_in_camera(turned), [1, 0, 0], atol=0.02)  # its left turn: the image's right
    assert np.allclose(root_joint(body, turned.betas) + turned.transl[0], pelvis, atol=1e-6)  # turned in place
    assert turned.transl[-1, 0] > 2.0  # the walk goes to the right across the view

    slow = place_in_front_of_camera(body, world, fps=16.0)
    assert slow.fps == 16.0 and slow.num_frames == 35  # 65 intervals of 1/30 s hold 34 of 1/16 s


def test_walking_behind_the_camera_says_which_frame_and_what_to_do(body):
    world = read_amass(EXAMPLE, body)  # walks 2.3 m towards the camera at yaw 0
    with pytest.raises(CoMoViError, match=r"walk_amass.npz walks behind the camera: in frame \d+ .*increase distance"):
        place_in_front_of_camera(body, world, distance=1.5)


def _bad(tmp_path: Path, case: str) -> Path:
    path = tmp_path / f"{case}.npz"
    clip = _clip(frames=3)
    if case == "truncated":
        _write(path, **clip)
        path.write_bytes(path.read_bytes()[:300])
    elif case == "not_zip":
        path.write_bytes(b"\x00" * 100)
    elif case == "missing":
        _write(path, poses=clip["poses"], betas=clip["betas"])
    elif case == "shape_only":
        _write(path, betas=clip["betas"], gender=clip["gender"])
    elif case == "width":
        _write(path, **{**clip, "poses": clip["poses"][:, :100]})
    elif case == "trans":
        _write(path, **{**clip, "trans": clip["trans"][:2]})
    elif case == "nan":
        clip["poses"][1, 7] = np.nan
        _write(path, **clip)
    elif case == "empty":
        _write(path, **{**clip, "poses": np.zeros((0, 156)), "trans": np.zeros((0, 3))})
    elif case == "pickled":
        _write(path, **{**clip, "gender": np.array({"gender": "male"}, dtype=object)})
    elif case == "rate":
        _write(path, **{**clip, "mocap_framerate": np.float64(0)})
    return path


@pytest.mark.parametrize(
    "case, message",
    [
        ("truncated", "not a readable .npz file"),
        ("not_zip", "not a readable .npz file"),
        ("missing", r"missing \['trans', 'mocap_framerate'\] \(found: betas, poses\)"),
        ("shape_only", "holds only a body shape .* no motion"),
        ("width", r"'poses' has shape \(3, 100\); expected .*156 = SMPL-H"),
        ("trans", r"'trans' has shape \(2, 3\), expected \(3, 3\)"),
        ("nan", r"'poses' contains NaN .* \(1, 7\) \(frame 1\)"),
        ("empty", "'poses' has no frames"),
        ("pickled", "'gender' is a pickled Python object; CoMoVi never unpickles"),
        ("rate", "'mocap_framerate' must be one positive number"),
    ],
)
def test_bad_amass_files_say_what_is_wrong(body, tmp_path, case, message):
    path = _bad(tmp_path, case)
    with pytest.raises(CoMoViError, match=message) as err:
        load_motion_file(path, body)
    assert str(path) in str(err.value)


def test_our_motion_files_keep_their_camera_and_are_only_resampled(body, tmp_path):
    motion = demo_motion(num_frames=33, fps=16.0)
    motion.betas = np.linspace(-1, 1, 10).astype(np.float32)
    path = save_motion(tmp_path / "motion.npz", motion)
    same = load_motion_file(path, body, distance=9.0, yaw=45.0)  # placement does not apply to our files
    assert np.array_equal(same.transl, load_motion(path).transl) and same.camera == motion.camera
    fast = load_motion_file(path, body, fps=32.0)
    assert fast.num_frames == 65 and fast.fps == 32.0 and fast.camera == motion.camera
    verts, fast_verts = camera_vertices(body, motion).vertices, camera_vertices(body, fast).vertices
    assert torch.allclose(fast_verts[::2], verts, atol=1e-5)  # every other frame is an original one
    assert torch.allclose(fast_verts[1::2], (verts[:-1] + verts[1:]) / 2, atol=0.01)  # in between: halfway


def test_unknown_kinds_of_file_list_the_supported_ones(body, tmp_path):
    path = tmp_path / "take.fbx"
    path.write_bytes(b"Kaydara FBX Binary")
    with pytest.raises(CoMoViError, match=r"take.fbx: unknown kind of motion file; CoMoVi reads .npz: .* \.bvh: CMU"):
        load_motion_file(path, body)


def test_the_built_in_example_is_what_the_script_makes(body):
    spec = importlib.util.spec_from_file_location("make_example_motions", ROOT / "tools" / "make_example_motions.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    standin = load_body_model()
    want = script.amass_arrays(standin, script.walk_world(standin))
    with np.load(EXAMPLE, allow_pickle=False) as npz:
        assert sorted(npz.files) == sorted(want)
        for key, value in want.items():
            assert np.array_equal(npz[key], value), key
    assert EXAMPLE.stat().st_size < 50_000


def test_load_motion_file_node_gives_the_core_result(ext):
    node = ext["nodes"]["CoMoViLoadMotionFile"]
    file_input = next(i for i in node.define_schema().inputs if i.id == "file")
    assert file_input.options[0] == "example: walk (built-in AMASS file)"
    model = ext["nodes"]["CoMoViLoadSMPLModel"].execute("built-in mannequin (NOT SMPL, demo only)").args[0]
    got = node.execute(model, file_input.options[0], 16.0, 4.0, 1.1, 60.0, 384, 224, 45.0).args[0]
    want = load_motion_file(
        EXAMPLE, model, fps=16.0, distance=4.0, height=1.1, yaw=60.0, image_size=(224, 384), fov_degrees=45.0
    )
    for key in ("global_orient", "body_pose", "betas", "transl"):
        assert np.array_equal(getattr(got, key), getattr(want, key)), key
    assert got.fps == 16.0 and got.num_frames == 35 and vars(got.camera) == vars(want.camera)


def test_load_motion_file_node_lists_the_input_folders_mocap_files(ext, caplog):
    caplog.set_level(logging.WARNING)
    clip = _clip(frames=4)
    _write(ext["base"] / "input" / "dance_poses.npz", **clip)
    (ext["base"] / "input" / "notes.txt").write_text("not a motion")
    node = ext["nodes"]["CoMoViLoadMotionFile"]
    options = next(i for i in node.define_schema().inputs if i.id == "file").options
    assert "dance_poses.npz" in options and "notes.txt" not in options
    model = ext["nodes"]["CoMoViLoadSMPLModel"].execute("built-in mannequin (NOT SMPL, demo only)").args[0]
    motion = node.execute(model, "dance_poses.npz", 0.0, 5.0, 1.0, 0.0, 640, 352, 50.0).args[0]
    assert motion.num_frames == 4 and motion.fps == 120.0 and motion.camera.image_size == (352, 640)


def test_the_motion_file_template_runs_in_the_test_host(ext):
    """comovi_motion_file_to_video.json as the frontend sends it, run node by node (ComfyUI's own nodes stood in
    for: a grey start image; the savers and previews only receive): the sampler follows the loaded walk."""
    from test_workflow_templates import to_prompt

    prompt = to_prompt(ext, json.loads((ROOT / "example_workflows" / "comovi_motion_file_to_video.json").read_text()))
    done = {}
    while len(done) < len(prompt):
        for key, node in prompt.items():
            links = [v for v in node["inputs"].values() if isinstance(v, list)]
            if key in done or any(src not in done for src, _ in links):
                continue
            args = {k: done[v[0]][v[1]] if isinstance(v, list) else v for k, v in node["inputs"].items()}
            if node["class_type"] == "LoadImage":
                done[key] = (torch.full((1, 224, 384, 3), 0.5), None)
            elif node["class_type"] in ext["nodes"]:
                done[key] = ext["nodes"][node["class_type"]].execute(**args).args
            else:
                done[key] = ()
    sampler = next(k for k, n in prompt.items() if n["class_type"] == "CoMoViDualSampler")
    loader = next(k for k, n in prompt.items() if n["class_type"] == "CoMoViLoadMotionFile")
    assert prompt[sampler]["inputs"]["mode"] == "motion_to_video"
    assert prompt[sampler]["inputs"]["given_motion"] == [loader, 0]
    video, motion_map, _, info = done[sampler]
    assert video.shape == motion_map.shape == (17, 224, 384, 3) and "17 frames" in info
    walk = done[loader][0]
    assert walk.num_frames == 35 and walk.camera.image_size == (224, 384)
