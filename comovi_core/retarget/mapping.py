"""SMPL world motion to a target skeleton's animation and back.

Rest alignment. Each SMPL joint j gets a rest rotation A_j: the world rotation that turns SMPL's T-pose frame of
joint j into the target bone's rest frame (identity for a T-pose skeleton; UE5's A-pose swings the upper arms
down). A bone that carries joint j has the world rotation W = G_j A_j^T, G_j being the SMPL joint's world
rotation, and back: G_j = W A_j.

SMPL -> skeleton (``to_skeleton``): bone positions come from the shaped SMPL body's rest skeleton posed in the
target's rest pose, so the motion is exact for that body (every mapped bone lands on its SMPL joint). In-between
bones (UE5 ``spine_04``) turn with the joint before them; SMPL joints with no bone (the hand tips for
Mixamo / UE5 / VRM) lose their own rotation.

Skeleton -> SMPL (``from_skeleton``, for BVH files): the file's rest pose (zero rotations) is its rest. A_j is
measured from the file's rest geometry: for a joint with several mapped children the rotation that best turns
SMPL's rest directions to them into the file's (least squares), for one child the parent's A_j followed by the
shortest turn onto the file's bone, for none the parent's. Root translation is scaled by SMPL's leg length over
the file's, so feet keep their contact whatever the file's units or proportions.
"""

from __future__ import annotations

import numpy as np

from ..body.mannequin import PARENTS
from ..body.smpl import BodyModel
from ..body.world import WorldMotion, rest_joints
from ..errors import CoMoViError
from .animation import SkeletonAnimation, forward_kinematics, rest_positions
from .skeletons import TargetSkeleton

# Default End Site offsets (T-pose, metres) for bones at SMPL's leaf joints: head up, toes forward, hands outward.
_LEAF_ENDS = {
    15: (0.0, 0.1, 0.0),
    10: (0.0, 0.0, 0.05),
    11: (0.0, 0.0, 0.05),
    22: (0.05, 0.0, 0.0),
    23: (-0.05, 0.0, 0.0),
}
_SMPL_CHILDREN = {j: [c for c in range(24) if PARENTS[c] == j] for j in range(24)}
_LEGS = ((0, 1, 4, 7), (0, 2, 5, 8))  # pelvis, hip, knee, ankle


def _matrices(rotvec: np.ndarray) -> np.ndarray:
    from scipy.spatial.transform import Rotation  # on use: scipy costs ~0.4 s at ComfyUI start-up

    shape = rotvec.shape[:-1]
    return Rotation.from_rotvec(rotvec.reshape(-1, 3)).as_matrix().reshape(*shape, 3, 3)


def _rotvecs(matrix: np.ndarray) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    shape = matrix.shape[:-2]
    return Rotation.from_matrix(matrix.reshape(-1, 3, 3)).as_rotvec().reshape(*shape, 3)


def shortest_turn(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """(3, 3) the smallest rotation taking direction ``u`` onto direction ``v``."""
    u, v = u / np.linalg.norm(u), v / np.linalg.norm(v)
    axis, cos = np.cross(u, v), float(np.dot(u, v))
    sin = float(np.linalg.norm(axis))
    if sin < 1e-12:
        if cos > 0:
            return np.eye(3)
        other = np.eye(3)[np.argmin(np.abs(u))]
        axis = np.cross(u, other)
        return _matrices(axis / np.linalg.norm(axis) * np.pi)
    return _matrices(axis / sin * np.arctan2(sin, cos))


def rest_alignment(skeleton: TargetSkeleton, rest: np.ndarray) -> np.ndarray:
    """(24, 3, 3) world rest rotation A_j of every SMPL joint in ``skeleton``'s rest pose (``rest``: SMPL's T-pose
    joints): identity, except joints swung down (``rest_swing``) and everything below them."""
    align = np.tile(np.eye(3), (24, 1, 1))
    for j in range(24):
        base = align[PARENTS[j]] if j else np.eye(3)
        align[j] = base
        if j in skeleton.rest_swing:
            bone = base @ (rest[_SMPL_CHILDREN[j][0]] - rest[j])
            down = np.cross(bone, np.cross([0.0, -1.0, 0.0], bone))  # in the plane of the bone and -y, at 90 degrees
            angle = np.radians(skeleton.rest_swing[j])
            turned = np.cos(angle) * bone / np.linalg.norm(bone) + np.sin(angle) * down / np.linalg.norm(down)
            align[j] = shortest_turn(bone, turned) @ base
    return align


def _posed_rest(rest: np.ndarray, align: np.ndarray) -> np.ndarray:
    """(24, 3) SMPL's rest joints posed in the target's rest pose (joint 0 stays)."""
    posed = rest.copy()
    for j in range(1, 24):
        p = PARENTS[j]
        posed[j] = posed[p] + align[p] @ (rest[j] - rest[p])
    return posed


def _bone_rest(skeleton: TargetSkeleton, posed: np.ndarray, rest: np.ndarray) -> np.ndarray:
    """(J, 3) rest positions of the skeleton's bones."""
    out = np.zeros((len(skeleton.bones), 3))
    for b, bone in enumerate(skeleton.bones):
        if bone.joint is not None:
            out[b] = posed[bone.joint]
        elif bone.between is not None:
            a, c, t = bone.between
            out[b] = posed[a] + t * (posed[c] - posed[a])
        elif bone.floor:
            lowest = min(rest[j, 1] for j in (7, 8, 10, 11))  # ankles and toes
            out[b] = (posed[0, 0], lowest, posed[0, 2])
        else:
            raise AssertionError(f"bone {bone.name} has no place")
    return out


def _frame_joint(skeleton: TargetSkeleton, b: int) -> int | None:
    """The SMPL joint whose frame bone ``b`` turns with (None: a root that never turns)."""
    bone = skeleton.bones[b]
    return bone.joint if bone.joint is not None else (bone.between[0] if bone.between is not None else None)


def to_skeleton(model: BodyModel, world: WorldMotion, skeleton: TargetSkeleton) -> SkeletonAnimation:
    """``world`` as an animation of ``skeleton``, its bone offsets taken from ``model``'s body of shape
    ``world.betas`` (see the module docstring)."""
    rest = rest_joints(model, world.betas)
    align = rest_alignment(skeleton, rest)
    positions = _bone_rest(skeleton, _posed_rest(rest, align), rest)
    names = [b.name for b in skeleton.bones]
    parents = [-1 if b.parent is None else names.index(b.parent) for b in skeleton.bones]

    frames = world.num_frames
    local = _matrices(np.concatenate([world.global_orient, world.body_pose], 1).reshape(frames, 24, 3))
    smpl_world = local.copy()
    for j in range(1, 24):
        smpl_world[:, j] = smpl_world[:, PARENTS[j]] @ local[:, j]
    bone_world = np.zeros((frames, len(names), 3, 3))
    bind = np.tile(np.eye(3), (len(names), 1, 1))
    for b in range(len(names)):
        j = _frame_joint(skeleton, b)
        bone_world[:, b] = np.eye(3) if j is None else smpl_world[:, j] @ align[j].T
        if j is not None:
            bind[b] = align[j]
    rotations = bone_world.copy()
    for b, p in enumerate(parents):
        if p >= 0:
            rotations[:, b] = np.swapaxes(bone_world[:, p], -1, -2) @ bone_world[:, b]

    offsets = positions - np.where(np.array(parents)[:, None] >= 0, positions[parents], 0.0)
    offsets[0] = 0.0  # the root's place is in root_position
    root_position = rest[0] + world.transl  # the pelvis: SMPL turns the body about the rest root joint
    if skeleton.bones[0].joint is None:  # a root on the floor: it follows the pelvis at its rest distance
        root_position = root_position - (positions[names.index(skeleton.mapped[0])] - positions[0])
    ends = np.zeros((len(names), 3))
    for b, bone in enumerate(skeleton.bones):
        if b in parents or bone.joint is None:
            continue
        j = bone.joint
        kids = _SMPL_CHILDREN[j]
        ends[b] = align[j] @ ((rest[kids[0]] - rest[j]) if kids else np.array(_LEAF_ENDS[j]))
    return SkeletonAnimation(
        [skeleton.prefix + n for n in names],
        parents,
        offsets,
        rotations,
        root_position,
        world.fps,
        end_sites=ends,
        joints=[b.joint for b in skeleton.bones],
        bind=bind,
    )


def _bone_indices(skeleton: TargetSkeleton, animation: SkeletonAnimation) -> dict[int, int]:
    """SMPL joint -> index of its bone in ``animation`` (names compared without a ``namespace:`` prefix)."""
    plain = {name.rsplit(":", 1)[-1]: b for b, name in enumerate(animation.names)}
    return {j: plain[name] for j, name in skeleton.mapped.items() if name in plain}


def measured_alignment(rest: np.ndarray, file_rest: np.ndarray, bone_of: dict[int, int]) -> np.ndarray:
    """(24, 3, 3) A_j measured from a file's rest bone positions ``file_rest`` (see the module docstring)."""
    from scipy.spatial.transform import Rotation

    align = np.tile(np.eye(3), (24, 1, 1))
    for j in range(24):
        base = align[PARENTS[j]] if j else np.eye(3)
        kids = [c for c in _SMPL_CHILDREN[j] if c in bone_of and j in bone_of]
        src = np.array([rest[c] - rest[j] for c in kids])
        dst = np.array([file_rest[bone_of[c]] - file_rest[bone_of[j]] for c in kids])
        usable = [k for k in range(len(kids)) if np.linalg.norm(src[k]) > 1e-9 and np.linalg.norm(dst[k]) > 1e-9]
        src, dst = src[usable], dst[usable]
        if len(src) >= 2 and np.linalg.matrix_rank(_unit_rows(src), tol=1e-6) >= 2:
            align[j] = Rotation.align_vectors(_unit_rows(dst), _unit_rows(src))[0].as_matrix()
        elif len(src) >= 1:
            align[j] = shortest_turn(base @ src[0], dst[0]) @ base
        else:
            align[j] = base
    return align


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def leg_length(points: np.ndarray, index: dict[int, int] | None = None) -> float:
    """Mean length of the two pelvis-hip-knee-ankle chains (``index``: SMPL joint -> row of ``points``)."""
    index = index or {j: j for j in range(24)}
    return float(
        np.mean([sum(np.linalg.norm(points[index[b]] - points[index[a]]) for a, b in zip(c, c[1:])) for c in _LEGS])
    )


def from_skeleton(
    model: BodyModel,
    animation: SkeletonAnimation,
    skeleton: TargetSkeleton,
    *,
    betas: np.ndarray | None = None,
    source: str = "",
) -> WorldMotion:
    """A skeleton animation (a BVH file's) as a SMPL world motion on ``model``'s body of shape ``betas`` (default
    zeros). Every SMPL joint but the hand tips needs its bone (``skeleton.mapped``)."""
    betas = np.zeros(10) if betas is None else np.asarray(betas, dtype=np.float64)
    bone_of = _bone_indices(skeleton, animation)
    missing = [skeleton.mapped[j] for j in skeleton.mapped if j not in bone_of and j not in (22, 23)]
    if missing:
        raise CoMoViError(f"{source or 'the animation'} has no bones {missing} of the {skeleton.name} skeleton")
    rest = rest_joints(model, betas)
    file_rest = rest_positions(animation)
    align = measured_alignment(rest, file_rest, bone_of)
    file_legs = leg_length(file_rest, bone_of)
    if file_legs <= 1e-9:
        raise CoMoViError(f"{source or 'the animation'} has legs of zero length in its rest pose: no scale to use")
    scale = leg_length(rest) / file_legs

    bone_world, bone_positions = forward_kinematics(animation)
    frames = animation.num_frames
    smpl_world = np.zeros((frames, 24, 3, 3))
    for j in range(24):
        smpl_world[:, j] = bone_world[:, bone_of[j]] @ align[j] if j in bone_of else smpl_world[:, PARENTS[j]]
    local = smpl_world.copy()
    for j in range(1, 24):
        local[:, j] = np.swapaxes(smpl_world[:, PARENTS[j]], -1, -2) @ smpl_world[:, j]
    pose = _rotvecs(local)
    transl = bone_positions[:, bone_of[0]] * scale - rest[0]
    return WorldMotion(pose[:, 0], pose[:, 1:].reshape(frames, 69), betas, transl, animation.fps, source=source)
