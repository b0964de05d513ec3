"""The skeletons SMPL is retargeted to and from: SMPL itself, Mixamo, UE5 Manny/Quinn, VRM humanoid and CMU (the
cgspeed BVH conversion).

Each bone either carries one SMPL joint's rotation (``joint``), or is an in-between bone with no SMPL counterpart
(UE5 ``spine_04``, ``spine_05``, ``neck_02``; CMU ``LHipJoint``, ``Neck1``): it sits on the segment between two
SMPL joints (``between``) and turns with the first of them (identity local rotation), so every mapped bone lands
exactly on its SMPL joint. A root that is no SMPL joint (UE5 ``root``) sits on the floor under the pelvis
(``floor``) and carries the body's translation, never a rotation.

A skeleton's rest pose is SMPL's T-pose with some bones swung down (``rest_swing``: UE5's A-pose lowers the upper
arms by about 45 degrees); Mixamo, VRM, CMU and SMPL rest in the T-pose. Names and hierarchies are the tools' own;
bone positions always come from the SMPL body being exported (see ``retarget.mapping``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..body.mannequin import PARENTS
from ..body.parts import SMPL_JOINT_NAMES


@dataclass(frozen=True)
class TargetBone:
    name: str
    parent: str | None  # None for the root
    joint: int | None = None  # the SMPL joint whose rotation the bone carries
    between: tuple[int, int, float] | None = None  # in-between bone: (SMPL joint a, joint b, fraction a -> b)
    floor: bool = False  # a root on the floor under the pelvis (UE5)


@dataclass(frozen=True)
class TargetSkeleton:
    name: str
    bones: tuple[TargetBone, ...]  # parents before children
    rest_swing: dict[int, float] = field(default_factory=dict)  # SMPL joint -> degrees its bone is swung down at rest
    prefix: str = ""  # written before every bone name (Mixamo: "mixamorig:")

    @property
    def mapped(self) -> dict[int, str]:
        """SMPL joint -> the bone that carries it."""
        return {b.joint: b.name for b in self.bones if b.joint is not None}


_MIRROR = {1: 2, 4: 5, 7: 8, 10: 11, 13: 14, 16: 17, 18: 19, 20: 21, 22: 23}


def _sides(rows: list[tuple], left: tuple[str, str], right: tuple[str, str]) -> list[TargetBone]:
    """Rows ``(name, parent, joint[, between])`` written for the left side (``{s}`` / ``{t}`` in names: the
    side's word / tag, SMPL joints of the left side), made for both sides."""
    out = []
    for s, t in (left, right):
        flip = (lambda j: j) if (s, t) == left else (lambda j: _MIRROR.get(j, j))
        for name, parent, joint, *between in rows:
            out.append(
                TargetBone(
                    name.format(s=s, t=t),
                    None if parent is None else parent.format(s=s, t=t),
                    None if joint is None else flip(joint),
                    between=(flip(between[0][0]), flip(between[0][1]), between[0][2]) if between else None,
                )
            )
    return out


SMPL_SKELETON = TargetSkeleton(
    "smpl",
    tuple(
        TargetBone(name, None if PARENTS[j] < 0 else SMPL_JOINT_NAMES[PARENTS[j]], j)
        for j, name in enumerate(SMPL_JOINT_NAMES)
    ),
)

MIXAMO = TargetSkeleton(
    "mixamo",
    (
        TargetBone("Hips", None, 0),
        TargetBone("Spine", "Hips", 3),
        TargetBone("Spine1", "Spine", 6),
        TargetBone("Spine2", "Spine1", 9),
        TargetBone("Neck", "Spine2", 12),
        TargetBone("Head", "Neck", 15),
        *_sides(
            [
                ("{s}Shoulder", "Spine2", 13),
                ("{s}Arm", "{s}Shoulder", 16),
                ("{s}ForeArm", "{s}Arm", 18),
                ("{s}Hand", "{s}ForeArm", 20),
                ("{s}UpLeg", "Hips", 1),
                ("{s}Leg", "{s}UpLeg", 4),
                ("{s}Foot", "{s}Leg", 7),
                ("{s}ToeBase", "{s}Foot", 10),
            ],
            ("Left", "L"),
            ("Right", "R"),
        ),
    ),
    prefix="mixamorig:",
)

UE5 = TargetSkeleton(
    "ue5",
    (
        TargetBone("root", None, floor=True),
        TargetBone("pelvis", "root", 0),
        TargetBone("spine_01", "pelvis", 3),
        TargetBone("spine_02", "spine_01", 6),
        TargetBone("spine_03", "spine_02", 9),
        TargetBone("spine_04", "spine_03", between=(9, 12, 1 / 3)),
        TargetBone("spine_05", "spine_04", between=(9, 12, 2 / 3)),
        TargetBone("neck_01", "spine_05", 12),
        TargetBone("neck_02", "neck_01", between=(12, 15, 0.5)),
        TargetBone("head", "neck_02", 15),
        *_sides(
            [
                ("clavicle_{t}", "spine_05", 13),
                ("upperarm_{t}", "clavicle_{t}", 16),
                ("lowerarm_{t}", "upperarm_{t}", 18),
                ("hand_{t}", "lowerarm_{t}", 20),
                ("thigh_{t}", "pelvis", 1),
                ("calf_{t}", "thigh_{t}", 4),
                ("foot_{t}", "calf_{t}", 7),
                ("ball_{t}", "foot_{t}", 10),
            ],
            ("", "l"),
            ("", "r"),
        ),
    ),
    rest_swing={16: 45.0, 17: 45.0},  # Manny/Quinn's A-pose: upper arms about 45 degrees below horizontal
)

VRM = TargetSkeleton(
    "vrm",
    (
        TargetBone("hips", None, 0),
        TargetBone("spine", "hips", 3),
        TargetBone("chest", "spine", 6),
        TargetBone("upperChest", "chest", 9),
        TargetBone("neck", "upperChest", 12),
        TargetBone("head", "neck", 15),
        *_sides(
            [
                ("{s}Shoulder", "upperChest", 13),
                ("{s}UpperArm", "{s}Shoulder", 16),
                ("{s}LowerArm", "{s}UpperArm", 18),
                ("{s}Hand", "{s}LowerArm", 20),
                ("{s}UpperLeg", "hips", 1),
                ("{s}LowerLeg", "{s}UpperLeg", 4),
                ("{s}Foot", "{s}LowerLeg", 7),
                ("{s}Toes", "{s}Foot", 10),
            ],
            ("left", "L"),
            ("right", "R"),
        ),
    ),
)

CMU = TargetSkeleton(
    "cmu",
    (
        TargetBone("Hips", None, 0),
        *_sides(
            [
                ("{t}HipJoint", "Hips", None, (0, 1, 0.0)),
                ("{s}UpLeg", "{t}HipJoint", 1),
                ("{s}Leg", "{s}UpLeg", 4),
                ("{s}Foot", "{s}Leg", 7),
                ("{s}ToeBase", "{s}Foot", 10),
            ],
            ("Left", "L"),
            ("Right", "R"),
        ),
        TargetBone("LowerBack", "Hips", 3),
        TargetBone("Spine", "LowerBack", 6),
        TargetBone("Spine1", "Spine", 9),
        TargetBone("Neck", "Spine1", 12),
        TargetBone("Neck1", "Neck", between=(12, 15, 0.5)),
        TargetBone("Head", "Neck1", 15),
        *_sides(
            [
                ("{s}Shoulder", "Spine1", 13),
                ("{s}Arm", "{s}Shoulder", 16),
                ("{s}ForeArm", "{s}Arm", 18),
                ("{s}Hand", "{s}ForeArm", 20),
                ("{s}FingerBase", "{s}Hand", 22),
                ("{s}HandIndex1", "{s}FingerBase", None, (20, 22, 1.5)),
                ("{t}Thumb", "{s}Hand", None, (20, 22, 0.5)),
            ],
            ("Left", "L"),
            ("Right", "R"),
        ),
    ),
)

SKELETONS: dict[str, TargetSkeleton] = {s.name: s for s in (SMPL_SKELETON, MIXAMO, UE5, VRM, CMU)}
EXPORT_SKELETONS = ("smpl", "mixamo", "ue5", "vrm")  # the ones the export command and node offer
