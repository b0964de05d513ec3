"""Retargeting: SMPL -> Mixamo / UE5 / SMPL BVH -> read_bvh -> SMPL reproduces the joints; bvhio (a third-party
reader) sees the bones we promise; a hand-written CMU file arrives with the pose it holds; bad files say what is
wrong."""

from __future__ import annotations

import copy
import logging

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from comovi_core.body.mannequin import demo_motion
from comovi_core.body.parts import SMPL_JOINT_NAMES
from comovi_core.body.smpl import load_body_model
from comovi_core.body.world import motion_to_world
from comovi_core.errors import CoMoViError
from comovi_core.export.bvh import write_bvh
from comovi_core.export.skeleton import ExportOptions
from comovi_core.mocap.bvh import read_bvh

MM = 1e-3


@pytest.fixture(scope="module")
def body():
    return load_body_model(None)


@pytest.fixture(scope="module")
def motion():
    """The demo motion plus large random turns of every body joint, on a shaped body."""
    m = demo_motion(num_frames=6, height=64, width=64)
    rng = np.random.default_rng(7)
    m.body_pose = m.body_pose + rng.uniform(-1.2, 1.2, m.body_pose.shape)
    m.betas = np.linspace(-1.0, 1.5, 10)
    return m


def _joints(body, world) -> np.ndarray:
    """(T, 24, 3) SMPL joints of a world motion, y-up world, metres."""
    with torch.no_grad():
        out = body(
            *(torch.as_tensor(np.asarray(a), dtype=torch.float32) for a in (world.global_orient, world.body_pose)),
            torch.as_tensor(world.betas, dtype=torch.float32),
            torch.as_tensor(world.transl, dtype=torch.float32),
        )
    return out.joints.double().numpy()


@pytest.mark.parametrize("skeleton", ["mixamo", "ue5", "smpl", "vrm"])
def test_bvh_round_trip_reproduces_the_joints(body, motion, skeleton, tmp_path):
    path = write_bvh(tmp_path / f"{skeleton}.bvh", body, motion, ExportOptions(skeleton=skeleton))
    back = read_bvh(path, body, betas=motion.betas)
    want = _joints(body, motion_to_world(body, motion))
    got = _joints(body, back)
    assert np.abs(got - want).max() < 1 * MM  # the acceptance: within 1 mm (it is ~0.003 mm)
    assert back.num_frames == 6 and back.fps == pytest.approx(16.0, rel=1e-5)
    # the joints' own rotations come back too, but for the hand tips Mixamo / UE5 / VRM have no bone for
    source = Rotation.from_rotvec(motion.body_pose.reshape(-1, 3)).as_matrix().reshape(6, 23, 3, 3)
    result = Rotation.from_rotvec(back.body_pose.reshape(-1, 3)).as_matrix().reshape(6, 23, 3, 3)
    kept = list(range(23)) if skeleton == "smpl" else list(range(21))
    np.testing.assert_allclose(result[:, kept], source[:, kept], atol=1e-4)


def test_read_bvh_with_default_betas_is_the_zero_shape(body, tmp_path):
    m = demo_motion(num_frames=3, height=64, width=64)
    path = write_bvh(tmp_path / "m.bvh", body, m, ExportOptions(skeleton="mixamo"))
    back = read_bvh(path, body)
    assert np.array_equal(back.betas, np.zeros(10)) and back.source == str(path)
    assert np.abs(_joints(body, back) - _joints(body, motion_to_world(body, m))).max() < 1 * MM


MIXAMO_PARENTS = {"Hips": None, "Spine": "Hips", "Spine1": "Spine", "Spine2": "Spine1", "Neck": "Spine2"}
MIXAMO_PARENTS |= {"Head": "Neck"}
UE5_PARENTS = {"root": None, "pelvis": "root", "spine_01": "pelvis", "spine_02": "spine_01", "spine_03": "spine_02"}
UE5_PARENTS |= {"spine_04": "spine_03", "spine_05": "spine_04", "neck_01": "spine_05", "neck_02": "neck_01"}
UE5_PARENTS |= {"head": "neck_02"}
for _side, _tag in (("Left", "l"), ("Right", "r")):
    MIXAMO_PARENTS |= {
        f"{_side}Shoulder": "Spine2",
        f"{_side}Arm": f"{_side}Shoulder",
        f"{_side}ForeArm": f"{_side}Arm",
        f"{_side}Hand": f"{_side}ForeArm",
        f"{_side}UpLeg": "Hips",
        f"{_side}Leg": f"{_side}UpLeg",
        f"{_side}Foot": f"{_side}Leg",
        f"{_side}ToeBase": f"{_side}Foot",
    }
    UE5_PARENTS |= {
        f"clavicle_{_tag}": "spine_05",
        f"upperarm_{_tag}": f"clavicle_{_tag}",
        f"lowerarm_{_tag}": f"upperarm_{_tag}",
        f"hand_{_tag}": f"lowerarm_{_tag}",
        f"thigh_{_tag}": "pelvis",
        f"calf_{_tag}": f"thigh_{_tag}",
        f"foot_{_tag}": f"calf_{_tag}",
        f"ball_{_tag}": f"foot_{_tag}",
    }
_SMPL_OF = {  # bone -> SMPL joint name, written out here independently of retarget.skeletons
    "mixamo": {"Hips": "pelvis", "Spine": "spine1", "Spine1": "spine2", "Spine2": "spine3", "Neck": "neck"},
    "ue5": {"pelvis": "pelvis", "spine_01": "spine1", "spine_02": "spine2", "spine_03": "spine3", "neck_01": "neck"},
}
for _side, _tag, _smpl in (("Left", "l", "left"), ("Right", "r", "right")):
    for _mixamo, _ue5, _joint in (
        ("Shoulder", "clavicle", "collar"),
        ("Arm", "upperarm", "shoulder"),
        ("ForeArm", "lowerarm", "elbow"),
        ("Hand", "hand", "wrist"),
        ("UpLeg", "thigh", "hip"),
        ("Leg", "calf", "knee"),
        ("Foot", "foot", "ankle"),
        ("ToeBase", "ball", "foot"),
    ):
        _SMPL_OF["mixamo"][f"{_side}{_mixamo}"] = f"{_smpl}_{_joint}"
        _SMPL_OF["ue5"][f"{_ue5}_{_tag}"] = f"{_smpl}_{_joint}"
_SMPL_OF["mixamo"]["Head"] = _SMPL_OF["ue5"]["head"] = "head"


@pytest.mark.parametrize(
    "skeleton, parents, prefix", [("mixamo", MIXAMO_PARENTS, "mixamorig:"), ("ue5", UE5_PARENTS, "")]
)
def test_bvhio_reads_our_bones_and_joint_positions(body, motion, skeleton, parents, prefix, tmp_path):
    bvhio = pytest.importorskip("bvhio")
    path = write_bvh(tmp_path / f"{skeleton}.bvh", body, motion, ExportOptions(skeleton=skeleton))
    root = bvhio.readAsHierarchy(str(path))
    found = {j.Name: (j.Parent.Name if j.Parent is not None else None) for j, _, _ in root.layout()}
    assert found == {prefix + b: (None if p is None else prefix + p) for b, p in parents.items()}
    want = _joints(body, motion_to_world(body, motion))
    for frame in (0, 3, 5):
        root.loadPose(frame)
        for bone, joint in _SMPL_OF[skeleton].items():
            got = np.array(root.filter(prefix + bone)[0].PositionWorld)
            assert np.abs(got - want[frame, SMPL_JOINT_NAMES.index(joint)]).max() < 1 * MM, (frame, bone)


def test_ue5_rests_in_an_a_pose_and_mixamo_in_a_t_pose(body, motion, tmp_path):
    def offsets(text):
        lines = [line.split() for line in text.splitlines()]
        return {
            lines[i][1]: np.array([float(v) for v in lines[i + 2][1:4]])
            for i in range(len(lines))
            if lines[i][:1] in (["JOINT"], ["ROOT"])
        }

    ue5 = offsets(write_bvh(tmp_path / "u.bvh", body, motion, ExportOptions(skeleton="ue5")).read_text())
    mixamo = offsets(write_bvh(tmp_path / "m.bvh", body, motion, ExportOptions(skeleton="mixamo")).read_text())
    for arm in (ue5["lowerarm_l"], ue5["hand_l"], ue5["lowerarm_r"]):
        assert np.degrees(np.arcsin(-arm[1] / np.linalg.norm(arm))) == pytest.approx(45.0, abs=1.0)  # 45 deg down
    assert abs(mixamo["mixamorig:LeftForeArm"][1]) < 0.01 and mixamo["mixamorig:LeftForeArm"][0] > 0.2  # level
    np.testing.assert_allclose(
        np.linalg.norm(ue5["lowerarm_l"]), np.linalg.norm(mixamo["mixamorig:LeftForeArm"]), atol=1e-5
    )


# A CMU-style file (the cgspeed conversion's bones and channel orders), centimetres, in a T-pose with the stand-in
# body's proportions. Frame 0 rests; frame 1 bends the left elbow 90 degrees (forearm forward); frame 2 turns the
# body 90 degrees about y, walks it 100 cm along x and lifts the left arm 45 degrees about z.
def _cmu_side(side: str, tag: str, sign: int) -> tuple[str, str]:
    def x(v):
        return f"{sign * v:g}"

    legs = f"""  JOINT {tag}HipJoint
  {{
    OFFSET 0 0 0
    CHANNELS 3 Zrotation Yrotation Xrotation
    JOINT {side}UpLeg
    {{
      OFFSET {x(9)} -8 0
      CHANNELS 3 Zrotation Yrotation Xrotation
      JOINT {side}Leg
      {{
        OFFSET {x(1)} -39 0
        CHANNELS 3 Zrotation Yrotation Xrotation
        JOINT {side}Foot
        {{
          OFFSET 0 -40 -3
          CHANNELS 3 Zrotation Yrotation Xrotation
          JOINT {side}ToeBase
          {{
            OFFSET {x(1)} -6 14
            CHANNELS 3 Zrotation Yrotation Xrotation
            End Site
            {{
              OFFSET 0 0 5
            }}
          }}
        }}
      }}
    }}
  }}
"""
    arms = f"""        JOINT {side}Shoulder
        {{
          OFFSET {x(7)} 11 -1
          CHANNELS 3 Zrotation Yrotation Xrotation
          JOINT {side}Arm
          {{
            OFFSET {x(11)} 3 -1
            CHANNELS 3 Zrotation Yrotation Xrotation
            JOINT {side}ForeArm
            {{
              OFFSET {x(26)} 0 -1
              CHANNELS 3 Zrotation Yrotation Xrotation
              JOINT {side}Hand
              {{
                OFFSET {x(25)} 0 0
                CHANNELS 3 Zrotation Yrotation Xrotation
                JOINT {side}FingerBase
                {{
                  OFFSET {x(8)} 0 0
                  CHANNELS 3 Zrotation Yrotation Xrotation
                  JOINT {side}HandIndex1
                  {{
                    OFFSET {x(4)} 0 0
                    CHANNELS 3 Zrotation Yrotation Xrotation
                    End Site
                    {{
                      OFFSET {x(2)} 0 0
                    }}
                  }}
                }}
                JOINT {tag}Thumb
                {{
                  OFFSET {x(2)} 0 2
                  CHANNELS 3 Zrotation Yrotation Xrotation
                  End Site
                  {{
                    OFFSET {x(2)} 0 0
                  }}
                }}
              }}
            }}
          }}
        }}
"""
    return legs, arms


def cmu_text(frames: list[str] | None = None, count: int | None = None) -> str:
    left_legs, left_arms = _cmu_side("Left", "L", 1)
    right_legs, right_arms = _cmu_side("Right", "R", -1)
    hierarchy = f"""HIERARCHY
ROOT Hips
{{
  OFFSET 0 0 0
  CHANNELS 6 Xposition Yposition Zposition Zrotation Yrotation Xrotation
{left_legs}{right_legs}  JOINT LowerBack
  {{
    OFFSET 0 10 -2
    CHANNELS 3 Zrotation Yrotation Xrotation
    JOINT Spine
    {{
      OFFSET 0 13 1
      CHANNELS 3 Zrotation Yrotation Xrotation
      JOINT Spine1
      {{
        OFFSET 0 6 1
        CHANNELS 3 Zrotation Yrotation Xrotation
        JOINT Neck
        {{
          OFFSET 0 21 -2
          CHANNELS 3 Zrotation Yrotation Xrotation
          JOINT Neck1
          {{
            OFFSET 0 4 2.5
            CHANNELS 3 Zrotation Yrotation Xrotation
            JOINT Head
            {{
              OFFSET 0 4 2.5
              CHANNELS 3 Zrotation Yrotation Xrotation
              End Site
              {{
                OFFSET 0 10 0
              }}
            }}
          }}
        }}
{left_arms}{right_arms}      }}
    }}
  }}
}}
"""
    order = ["Hips", "LHipJoint", "LeftUpLeg", "LeftLeg", "LeftFoot", "LeftToeBase"]
    order += ["RHipJoint", "RightUpLeg", "RightLeg", "RightFoot", "RightToeBase"]
    order += ["LowerBack", "Spine", "Spine1", "Neck", "Neck1", "Head"]
    order += ["LeftShoulder", "LeftArm", "LeftForeArm", "LeftHand", "LeftFingerBase", "LeftHandIndex1", "LThumb"]
    order += ["RightShoulder", "RightArm", "RightForeArm", "RightHand", "RightFingerBase", "RightHandIndex1", "RThumb"]
    if frames is None:
        rows = []
        for pose in ({}, {"LeftForeArm": (0, -90, 0)}, {"Hips": (0, 90, 0), "LeftArm": (45, 0, 0)}):
            values = [100 if pose.get("Hips") else 0, 93, 0]
            for bone in order:
                values += pose.get(bone, (0, 0, 0))  # Z, Y, X degrees
            rows.append(" ".join(f"{v:g}" for v in values))
        frames = rows
    return (
        hierarchy
        + f"MOTION\nFrames: {len(frames) if count is None else count}\nFrame Time: 0.0333333\n"
        + ("\n".join(frames) + "\n")
    )


def test_a_hand_written_cmu_file_arrives_with_its_pose(body, tmp_path, caplog):
    path = tmp_path / "cmu.bvh"
    path.write_text(cmu_text())
    with caplog.at_level(logging.INFO, logger="comovi_core.mocap.bvh"):
        world = read_bvh(path, body)
    assert "cmu skeleton" in caplog.text and "centimetres" in caplog.text
    assert world.num_frames == 3 and world.fps == pytest.approx(30.0, rel=1e-5)
    pose = world.body_pose.reshape(3, 23, 3)
    elbow, shoulder = SMPL_JOINT_NAMES.index("left_elbow") - 1, SMPL_JOINT_NAMES.index("left_shoulder") - 1
    np.testing.assert_allclose(world.body_pose[0], 0.0, atol=1e-5)  # the file's rest is SMPL's T-pose
    np.testing.assert_allclose(pose[1, elbow], [0.0, -np.pi / 2, 0.0], atol=1e-5)  # the 90 degree elbow bend
    np.testing.assert_allclose(np.delete(pose[1], elbow, axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(pose[2, shoulder], [0.0, 0.0, np.pi / 4], atol=1e-5)
    np.testing.assert_allclose(world.global_orient[2], [0.0, np.pi / 2, 0.0], atol=1e-5)
    # cm and the file's legs: root path scaled to the body (here 1:100), pelvis at 93 cm -> 0.93 m
    np.testing.assert_allclose(world.transl[:, [0, 2]], [[0, 0], [0, 0], [1.0, 0]], atol=1e-5)
    np.testing.assert_allclose(_joints(body, world)[:, 0, 1], 0.93, atol=1e-5)
    joints = _joints(body, world)
    forearm = joints[1, SMPL_JOINT_NAMES.index("left_wrist")] - joints[1, SMPL_JOINT_NAMES.index("left_elbow")]
    np.testing.assert_allclose(forearm / np.linalg.norm(forearm), [0, 0, 1], atol=1e-5)  # it points forward


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda t: t.replace("Frames: 3", "Frames: 4"), "truncated: 'Frames: 4' but only 3 frame lines"),
        (lambda t: t.rsplit("\n", 2)[0] + "\n", "truncated: 'Frames: 3' but only 2 frame lines"),
        (lambda t: t.replace("\n0 93 0 ", "\n0 93 ", 1), r"line \d+ \(frame 0\) has 95 values, the HIERARCHY's .* 96"),
        (lambda t: t.replace("\n100 93 0 ", "\n100 nan 0 ", 1), r"\(frame 2\) has NaN or infinite values"),
        (lambda t: t.split("Frames:")[0] + "Frames: 0\nFrame Time: 0.03\n", "it has 0 frames"),
        (lambda t: t.split("MOTION")[0], "no MOTION section"),
        (lambda t: t.replace("OFFSET 0 -40 -3", "OFFSET 0 -40", 1), "the HIERARCHY is malformed"),
        (lambda t: t.replace("LeftUpLeg", "LeftThigh").replace("LowerBack", "Waist"), "unknown skeleton"),
    ],
    ids=[
        "truncated",
        "truncated-line",
        "channel-count",
        "nan",
        "zero-frames",
        "no-motion",
        "offset",
        "unknown-skeleton",
    ],
)
def test_bad_bvh_files_say_what_is_wrong(body, tmp_path, edit, message):
    path = tmp_path / "bad.bvh"
    path.write_text(edit(cmu_text()))
    with pytest.raises(CoMoViError, match=message) as err:
        read_bvh(path, body)
    assert str(path) in str(err.value)


def test_an_unknown_skeleton_names_the_bones_it_expected(body, tmp_path):
    path = tmp_path / "robot.bvh"
    path.write_text(cmu_text().replace("LeftUpLeg", "LeftThigh").replace("LowerBack", "Waist"))
    with pytest.raises(CoMoViError) as err:
        read_bvh(path, body)
    text = str(err.value)
    assert "LeftThigh" in text  # the bones it has
    assert "mixamo: Hips, Spine, Spine1, Spine2" in text and "ue5: pelvis" in text and "cmu: Hips" in text
    assert "cmu lacks LeftUpLeg, LowerBack" in text
    with pytest.raises(CoMoViError, match="skeleton must be 'auto' or one of"):
        read_bvh(path, body, skeleton="maya")
    with pytest.raises(CoMoViError, match="not found"):
        read_bvh(tmp_path / "missing.bvh", body)


def test_mixamo_names_without_the_prefix_and_a_named_skeleton(body, motion, tmp_path):
    text = write_bvh(tmp_path / "m.bvh", body, motion, ExportOptions(skeleton="mixamo")).read_text()
    (tmp_path / "plain.bvh").write_text(text.replace("mixamorig:", ""))
    want = _joints(body, motion_to_world(body, motion))
    for path, skeleton in ((tmp_path / "plain.bvh", "auto"), (tmp_path / "m.bvh", "mixamo")):
        assert np.abs(_joints(body, read_bvh(path, body, skeleton=skeleton, betas=motion.betas)) - want).max() < MM
    with pytest.raises(CoMoViError, match=r"has no bones \['pelvis'"):
        read_bvh(tmp_path / "m.bvh", body, skeleton="ue5")


def test_a_z_up_file_is_turned_upright(body, motion, tmp_path):
    from comovi_core.export.bvh import animation_bvh
    from comovi_core.mocap.bvh import parse_bvh
    from comovi_core.retarget.animation import SkeletonAnimation

    path = write_bvh(tmp_path / "y.bvh", body, motion, ExportOptions(skeleton="mixamo"))
    a = parse_bvh(path).animation
    to_z = np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])  # y up -> z up, +z forward -> -y forward
    z_up = SkeletonAnimation(
        a.names,
        a.parents,
        a.offsets @ to_z.T,
        to_z @ a.rotations @ to_z.T,
        a.root_position @ to_z.T,
        a.fps,
        a.end_sites,
    )
    (tmp_path / "z.bvh").write_text(animation_bvh(z_up))
    back = read_bvh(tmp_path / "z.bvh", body, betas=motion.betas)
    assert np.abs(_joints(body, back) - _joints(body, motion_to_world(body, motion))).max() < MM


def test_cmu_through_the_library_round_trips(body, motion, tmp_path):
    """CMU is not offered by the command or the node, but the library writes it and reads it back."""
    from comovi_core.export.bvh import animation_bvh
    from comovi_core.retarget.mapping import to_skeleton
    from comovi_core.retarget.skeletons import CMU

    world = motion_to_world(body, motion)
    (tmp_path / "cmu.bvh").write_text(animation_bvh(to_skeleton(body, world, CMU)))
    back = read_bvh(tmp_path / "cmu.bvh", body, betas=motion.betas)
    assert np.abs(_joints(body, back) - _joints(body, world)).max() < MM
    np.testing.assert_allclose(back.body_pose, world.body_pose, atol=1e-4)  # CMU has a bone for every SMPL joint


def test_load_motion_file_reads_our_bvh(body, motion, tmp_path):
    """mocap.load (the Load Motion File node's core) reads a BVH through read_bvh: the pose arrives unchanged."""
    from comovi_core.mocap.load import load_motion_file

    motion = copy.deepcopy(motion)
    motion.betas = np.zeros(10)  # a BVH has no betas: it is read onto the zero shape
    path = write_bvh(tmp_path / "clip.bvh", body, motion, ExportOptions(skeleton="ue5"))
    loaded = load_motion_file(path, body)
    assert loaded.num_frames == 6 and loaded.fps == pytest.approx(16.0, rel=1e-5)
    source = Rotation.from_rotvec(motion.body_pose.reshape(-1, 3)).as_matrix().reshape(6, 23, 3, 3)
    result = Rotation.from_rotvec(loaded.body_pose.reshape(-1, 3)).as_matrix().reshape(6, 23, 3, 3)
    np.testing.assert_allclose(result[:, :21], source[:, :21], atol=1e-4)  # UE5 has no bones for the hand tips
