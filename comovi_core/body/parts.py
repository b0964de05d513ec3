"""The 24 body parts of the motion map and how SMPL vertices are assigned to them (docs/motion_map.md).

Part index p follows the key order of Meshcapade's ``smpl_vert_segmentation.json`` (as the release
reads it). That file is licensed with SMPL, so it is never shipped: when a user places it beside the
SMPL model it is used, otherwise each vertex takes the part of its dominant skinning joint.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import CoMoViError

PART_NAMES: tuple[str, ...] = (
    "rightHand",
    "rightUpLeg",
    "leftArm",
    "leftLeg",
    "leftToeBase",
    "leftFoot",
    "spine1",
    "spine2",
    "leftShoulder",
    "rightShoulder",
    "rightFoot",
    "head",
    "rightArm",
    "leftHandIndex1",
    "rightLeg",
    "rightHandIndex1",
    "leftForeArm",
    "rightForeArm",
    "neck",
    "rightToeBase",
    "spine",
    "leftUpLeg",
    "leftHand",
    "hips",
)
NUM_PARTS = len(PART_NAMES)  # 24

# SMPL joint names in joint-index order (smplx's JOINT_NAMES[:24] for SMPL).
SMPL_JOINT_NAMES: tuple[str, ...] = (
    "pelvis",
    "left_hip",
    "right_hip",
    "spine1",
    "left_knee",
    "right_knee",
    "spine2",
    "left_ankle",
    "right_ankle",
    "spine3",
    "left_foot",
    "right_foot",
    "neck",
    "left_collar",
    "right_collar",
    "head",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hand",
    "right_hand",
)

# Which part each SMPL joint's skinned region belongs to (docs/motion_map.md).
JOINT_TO_PART: dict[str, str] = {
    "pelvis": "hips",
    "left_hip": "leftUpLeg",
    "right_hip": "rightUpLeg",
    "spine1": "spine",
    "left_knee": "leftLeg",
    "right_knee": "rightLeg",
    "spine2": "spine1",
    "left_ankle": "leftFoot",
    "right_ankle": "rightFoot",
    "spine3": "spine2",
    "left_foot": "leftToeBase",
    "right_foot": "rightToeBase",
    "neck": "neck",
    "left_collar": "leftShoulder",
    "right_collar": "rightShoulder",
    "head": "head",
    "left_shoulder": "leftArm",
    "right_shoulder": "rightArm",
    "left_elbow": "leftForeArm",
    "right_elbow": "rightForeArm",
    "left_wrist": "leftHand",
    "right_wrist": "rightHand",
    "left_hand": "leftHandIndex1",
    "right_hand": "rightHandIndex1",
}

# part index of each SMPL joint, shape (24,)
JOINT_PART_INDEX = np.array([PART_NAMES.index(JOINT_TO_PART[j]) for j in SMPL_JOINT_NAMES], dtype=np.int64)

SEGMENTATION_FILENAME = "smpl_vert_segmentation.json"


def parts_from_skinning(weights: np.ndarray) -> np.ndarray:
    """(V, 24) skinning weights -> (V,) part index of each vertex's dominant joint."""
    if weights.ndim != 2 or weights.shape[1] != len(SMPL_JOINT_NAMES):
        raise CoMoViError(f"skinning weights must have shape (V, 24), got {tuple(weights.shape)}")
    return JOINT_PART_INDEX[np.argmax(weights, axis=1)]


def parts_from_segmentation(segmentation: dict, num_vertices: int) -> np.ndarray:
    """Meshcapade-style ``{part name: [vertex ids]}`` -> (V,) part index.

    Parts are applied in PART_NAMES order, so on a vertex listed under two parts the later one wins,
    exactly as the release's ``vertex_to_part`` loop does. Every vertex must be covered.
    """
    unknown = sorted(set(segmentation) - set(PART_NAMES))
    if unknown:
        raise CoMoViError(
            f"{SEGMENTATION_FILENAME}: unknown part names {unknown}; expected the 24 SMPL parts {list(PART_NAMES)}"
        )
    parts = np.full(num_vertices, -1, dtype=np.int64)
    for p, name in enumerate(PART_NAMES):
        ids = np.asarray(segmentation.get(name, []), dtype=np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= num_vertices):
            raise CoMoViError(f"{SEGMENTATION_FILENAME}: part {name!r} lists vertex ids outside 0..{num_vertices - 1}")
        parts[ids] = p
    missing = int((parts < 0).sum())
    if missing:
        raise CoMoViError(
            f"{SEGMENTATION_FILENAME}: {missing} of {num_vertices} vertices belong to no part; "
            "use the file that matches your SMPL model (6890 vertices) or remove it to fall back to skinning weights"
        )
    return parts


def load_segmentation(path: str | Path, num_vertices: int) -> np.ndarray:
    """Read a ``smpl_vert_segmentation.json`` file -> (V,) part index."""
    try:
        segmentation = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise CoMoViError(f"could not read the part segmentation {path}: {exc}") from exc
    if not isinstance(segmentation, dict):
        raise CoMoViError(f"{path}: expected a JSON object {{part name: [vertex ids]}}")
    return parts_from_segmentation(segmentation, num_vertices)
