"""A procedurally built stand-in body in SMPL's file format. It is NOT SMPL.

It lets a machine without the (licensed) SMPL files see real output and lets tests exercise every
code path: 6890 vertices, 24 joints in SMPL's order and hierarchy with a human-like rest skeleton
(T-pose, y up, about 1.7 m tall), skinning weights, 10 shape and 207 pose blend shapes, a joint
regressor. The surface is 24 closed ellipsoids, one per joint, so it has 13,684 faces (SMPL: 13,776).
"""

from __future__ import annotations

import functools

import numpy as np

from .model_file import STANDIN_KEY, BodyModelData, model_data_from_arrays

NUM_VERTICES = 6890
PARENTS = np.array([-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21])

# Rest joints (SMPL joint order), metres, x = body's left, y up, z forward.
REST_JOINTS = np.array(
    [
        [0.00, 0.00, 0.00],
        [0.09, -0.08, 0.00],
        [-0.09, -0.08, 0.00],
        [0.00, 0.10, -0.02],
        [0.10, -0.47, 0.00],
        [-0.10, -0.47, 0.00],
        [0.00, 0.23, -0.01],
        [0.10, -0.87, -0.03],
        [-0.10, -0.87, -0.03],
        [0.00, 0.29, 0.00],
        [0.11, -0.93, 0.11],
        [-0.11, -0.93, 0.11],
        [0.00, 0.50, -0.02],
        [0.07, 0.40, -0.01],
        [-0.07, 0.40, -0.01],
        [0.00, 0.58, 0.03],
        [0.18, 0.43, -0.02],
        [-0.18, 0.43, -0.02],
        [0.44, 0.43, -0.03],
        [-0.44, 0.43, -0.03],
        [0.69, 0.43, -0.03],
        [-0.69, 0.43, -0.03],
        [0.77, 0.43, -0.03],
        [-0.77, 0.43, -0.03],
    ]
)

# Per joint: the segment its ellipsoid covers (start, end) and the two cross radii.
_UP, _X = np.array([0.0, 1.0, 0.0]), np.array([1.0, 0.0, 0.0])
_SEGMENTS = {
    0: ((0, -0.09, 0), (0, 0.09, 0), (0.16, 0.11)),
    3: (REST_JOINTS[3], REST_JOINTS[6], (0.14, 0.10)),
    6: (REST_JOINTS[6], REST_JOINTS[9] + 0.1 * _UP, (0.15, 0.105)),
    9: (REST_JOINTS[9], REST_JOINTS[12], (0.17, 0.11)),
    12: (REST_JOINTS[12], REST_JOINTS[15], (0.05, 0.05)),
    15: (REST_JOINTS[15], REST_JOINTS[15] + 0.2 * _UP, (0.09, 0.10)),
    10: (REST_JOINTS[10], REST_JOINTS[10] + (0, 0, 0.08), (0.045, 0.03)),
    11: (REST_JOINTS[11], REST_JOINTS[11] + (0, 0, 0.08), (0.045, 0.03)),
    22: (REST_JOINTS[22], REST_JOINTS[22] + 0.09 * _X, (0.02, 0.045)),
    23: (REST_JOINTS[23], REST_JOINTS[23] - 0.09 * _X, (0.02, 0.045)),
}
_CHILD = {1: 4, 2: 5, 4: 7, 5: 8, 7: 10, 8: 11, 13: 16, 14: 17, 16: 18, 17: 19, 18: 20, 19: 21, 20: 22, 21: 23}
_RADII = {
    1: (0.075, 0.075),
    2: (0.075, 0.075),
    4: (0.055, 0.055),
    5: (0.055, 0.055),
    7: (0.045, 0.05),
    8: (0.045, 0.05),
    13: (0.06, 0.06),
    14: (0.06, 0.06),
    16: (0.05, 0.05),
    17: (0.05, 0.05),
    18: (0.04, 0.04),
    19: (0.04, 0.04),
    20: (0.02, 0.045),
    21: (0.02, 0.045),
}
for _j, _c in _CHILD.items():
    _SEGMENTS[_j] = (REST_JOINTS[_j], REST_JOINTS[_c], _RADII[_j])
_OVERLAP = 0.02  # ellipsoids reach a little past their segment so limbs look joined


def _ring_plan(lengths: np.ndarray) -> list[tuple[int, int]]:
    """(rings, segments) per ellipsoid so that sum(rings * segments + 2) == NUM_VERTICES."""
    segs = np.where(lengths > 0.15, 24, 16)
    budget = NUM_VERTICES - 2 * len(lengths)
    rings = np.maximum(4, np.round(budget * lengths / (lengths * segs).sum())).astype(int)
    # the last two ellipsoids (the hand tips) absorb the remainder exactly
    rest = budget - int((rings[:-2] * segs[:-2]).sum())
    options = [
        (abs(ra - rings[-2]) + abs(rb - rings[-1]) + abs(sb - segs[-1]), ra, rb, sb)
        for ra in range(3, rest // segs[-2])
        for sb in range(6, 33)
        for rb in [(rest - ra * segs[-2]) // sb]
        if rb >= 3 and ra * segs[-2] + rb * sb == rest
    ]
    _, ra, rb, sb = min(options)
    plan = [(int(r), int(s)) for r, s in zip(rings[:-2], segs[:-2])]
    return plan + [(ra, int(segs[-2])), (rb, sb)]


def _ellipsoid(rings: int, segs: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit UV ellipsoid: axial coordinate in [-1, 1], unit cross directions, faces (outward, CCW)."""
    theta = np.pi * np.arange(1, rings + 1) / (rings + 1)  # polar angles of the rings
    phi = 2 * np.pi * np.arange(segs) / segs
    axial = np.concatenate(([1.0], np.repeat(np.cos(theta), segs), [-1.0]))
    radial = np.concatenate(([0.0], np.repeat(np.sin(theta), segs), [0.0]))
    cross = np.stack((np.cos(np.tile(phi, rings)), np.sin(np.tile(phi, rings))), -1)
    cross = np.concatenate(([[1.0, 0.0]], cross, [[1.0, 0.0]])) * radial[:, None]
    return axial, cross, uv_sphere_faces(rings, segs)[:, ::-1].copy()  # flip to outward CCW


def uv_sphere_faces(rings: int, segs: int) -> np.ndarray:
    """Triangles (2 * rings * segs, 3) int64 of a UV sphere whose vertices are the first pole (index 0),
    ``rings`` rings of ``segs`` vertices each, then the last pole: fans at the poles, two triangles per quad.
    Wound (0, ring 0 segment 1, ring 0 segment 0) first: outward for a pole at +y and angles about y."""
    last = rings * segs + 1

    def ring(r, s):
        return 1 + r * segs + s % segs

    faces = [(0, ring(0, s + 1), ring(0, s)) for s in range(segs)]
    for r in range(rings - 1):
        for s in range(segs):
            a, b, c, d = ring(r, s), ring(r, s + 1), ring(r + 1, s), ring(r + 1, s + 1)
            faces += [(a, b, d), (a, d, c)]
    faces += [(last, ring(rings - 1, s), ring(rings - 1, s + 1)) for s in range(segs)]
    return np.array(faces, dtype=np.int64)


def _frame(axis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors perpendicular to ``axis`` (e1 toward the body's side or front)."""
    ref = np.array([0.0, 0.0, 1.0]) if abs(axis[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    e1 = np.cross(axis, ref)
    e1 /= np.linalg.norm(e1)
    return e1, np.cross(axis, e1)


@functools.lru_cache(maxsize=1)
def mannequin_arrays() -> dict[str, np.ndarray]:
    """The mannequin as the arrays an official SMPL file holds (plus a stand-in marker); read-only."""
    starts = np.array([_SEGMENTS[j][0] for j in range(24)], dtype=np.float64)
    ends = np.array([_SEGMENTS[j][1] for j in range(24)], dtype=np.float64)
    lengths = np.linalg.norm(ends - starts, axis=1)
    verts, faces, weights, regressor, radial_dirs = [], [], [], np.zeros((24, NUM_VERTICES)), []
    offset = 0
    for j, (rings, segs) in enumerate(_ring_plan(lengths)):
        axis = (ends[j] - starts[j]) / lengths[j]
        e1, e2 = _frame(axis)
        half = lengths[j] / 2 + _OVERLAP
        centre = (starts[j] + ends[j]) / 2
        axial, cross, tri = _ellipsoid(rings, segs)
        r1, r2 = _SEGMENTS[j][2]
        pts = centre + half * axial[:, None] * axis + r1 * cross[:, :1] * e1 + r2 * cross[:, 1:] * e2
        verts.append(pts)
        faces.append(tri + offset)
        radial_dirs.append(cross[:, :1] * e1 + cross[:, 1:] * e2)
        # skinning: the own joint dominates; the proximal end blends toward the parent
        t = np.clip((pts - starts[j]) @ axis / lengths[j], 0, 1)
        w = np.zeros((len(pts), 24))
        share = 0.35 * (1 - t) ** 2 if PARENTS[j] >= 0 else np.zeros_like(t)
        w[:, j] = 1 - share
        if PARENTS[j] >= 0:
            w[:, PARENTS[j]] = share
        weights.append(w)
        # joint regressor: joint j is on the axis, between two rings whose centres bracket it
        a = float((REST_JOINTS[j] - centre) @ axis / half)  # axial coordinate of the joint
        ring_axial = axial[1 : 1 + rings * segs : segs]  # decreasing from ~1 to ~-1
        k = int(np.clip(np.searchsorted(-ring_axial, -a), 1, rings - 1))
        lam = (ring_axial[k - 1] - a) / (ring_axial[k - 1] - ring_axial[k])
        for ring_index, share_k in ((k - 1, 1 - lam), (k, lam)):
            first = offset + 1 + ring_index * segs
            regressor[j, first : first + segs] = share_k / segs
        offset += len(pts)
    v_template = np.concatenate(verts)
    radial = np.concatenate(radial_dirs)
    joints_of = np.concatenate([np.full(len(v), j) for j, v in enumerate(verts)])
    shapedirs = np.zeros((NUM_VERTICES, 3, 10))
    shapedirs[:, :, 0] = 0.06 * v_template  # overall size
    shapedirs[:, :, 1] = 0.02 * radial  # girth
    for b in range(2, 10):  # smooth, distinct low-frequency deformations
        phase = np.sin((b + 1) * 2.1 * v_template[:, 1:2] + b)
        shapedirs[:, :, b] = 0.004 * phase * np.roll(np.eye(3), b, axis=0)[0]
    posedirs = np.zeros((NUM_VERTICES, 3, 207))
    for k in range(207):  # correctives act on the segments next to the rotating joint
        joint = k // 9 + 1
        near = (joints_of == joint) | (joints_of == PARENTS[joint])
        posedirs[near, :, k] = 0.002 * np.sin(k + 1.0) * radial[near]
    arrays = {
        "v_template": v_template,
        "shapedirs": shapedirs,
        "posedirs": posedirs,
        "J_regressor": regressor,
        "weights": np.concatenate(weights),
        "f": np.concatenate(faces).astype(np.uint32),
        "kintree_table": np.stack((np.where(PARENTS < 0, 4294967295, PARENTS), np.arange(24))).astype(np.int64),
        "J": REST_JOINTS.copy(),
        "bs_style": "lbs",
        "bs_type": "lrotmin",
        STANDIN_KEY: "procedural mannequin in SMPL's file format - NOT SMPL, for demos and tests",
    }
    for value in arrays.values():  # cached and shared: make accidental in-place edits fail loudly
        if isinstance(value, np.ndarray):
            value.setflags(write=False)
    return arrays


def mannequin_model_data() -> BodyModelData:
    return model_data_from_arrays(mannequin_arrays(), "built-in stand-in mannequin (not SMPL)")


def demo_motion(num_frames: int = 33, height: int = 704, width: int = 1280, fps: float = 16.0):
    """A short motion for the stand-in body: it turns a little, waves both arms and bends its knees.

    Returns a ``SMPLMotion`` with a centred camera that frames the body (3 m away, 50 degree FoV).
    """
    import torch

    from .camera import PinholeCamera
    from .motion_file import SMPLMotion
    from .rotations import axis_angle_to_matrix, matrix_to_axis_angle

    phase = torch.linspace(0, 2 * np.pi, num_frames + 1, dtype=torch.float64)[:-1]
    turn = axis_angle_to_matrix(torch.stack((0 * phase, 0.5 * torch.sin(phase), 0 * phase), -1))
    flip = axis_angle_to_matrix(torch.tensor([np.pi, 0.0, 0.0], dtype=torch.float64))  # SMPL y-up -> camera y-down
    global_orient = matrix_to_axis_angle(flip @ turn)
    body_pose = torch.zeros(num_frames, 23, 3, dtype=torch.float64)
    wave = 0.6 + 0.5 * torch.sin(2 * phase)
    body_pose[:, 15, 2] = -wave  # left shoulder (joint 16) lifts the arm down/up
    body_pose[:, 16, 2] = wave  # right shoulder (joint 17)
    body_pose[:, 17, 1] = -0.8 * (1 + torch.sin(2 * phase)) / 2  # left elbow (joint 18)
    body_pose[:, 18, 1] = 0.8 * (1 + torch.cos(2 * phase)) / 2  # right elbow (joint 19)
    bend = 0.5 * (1 - torch.cos(2 * phase)) / 2
    body_pose[:, 0, 0], body_pose[:, 1, 0] = -bend, -bend  # hips flex
    body_pose[:, 3, 0], body_pose[:, 4, 0] = 2 * bend, 2 * bend  # knees bend
    transl = torch.stack((0.1 * torch.sin(phase), 0.05 + 0.4 * bend, torch.full_like(phase, 3.0)), -1)
    camera = PinholeCamera.default_for(height, width)
    return SMPLMotion(
        global_orient.numpy(), body_pose.reshape(num_frames, 69).numpy(), np.zeros(10), transl.numpy(), fps, camera
    )
