"""Export a SMPL motion as an animated, skinned glTF 2.0 binary (``.glb``): Blender, Unreal, Maya, Houdini, three.js.

One file holds the shaped body mesh in its rest pose (T-pose, betas applied), a 24-joint skin with
SMPL's skinning weights (the strongest 4, or 8 when a vertex has more, renormalised), and one animation:
per-joint rotations and the root's translation, one key per motion frame at the motion's fps (LINEAR).
World: y up, metres, the camera at the origin looking down -z (as the BVH/OBJ exports). glTF skinning
is plain linear blend skinning, so SMPL's pose-corrective blend shapes are not included: expect
millimetres of difference at bent joints (compare the OBJ sequence, which has them).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import torch

from ..body.motion_file import SMPLMotion
from ..body.parts import SMPL_JOINT_NAMES
from ..body.smpl import BodyModel
from ..files.atomic import atomic_path
from .skeleton import CAMERA_TO_WORLD, rest_joints

_FLOAT, _UINT, _USHORT = 5126, 5125, 5123
_ARRAY, _ELEMENTS = 34962, 34963


class _Buffer:
    """Accumulates binary data (4-byte aligned views) and the accessors that describe it."""

    def __init__(self):
        self.data, self.views, self.accessors = bytearray(), [], []

    def add(self, array: np.ndarray, kind: str, component: int, target: int | None = None, bounds: bool = False) -> int:
        blob = np.ascontiguousarray(array).tobytes()
        self.data += b"\0" * (-len(self.data) % 4)
        view = {"buffer": 0, "byteOffset": len(self.data), "byteLength": len(blob)}
        if target is not None:
            view["target"] = target
        self.data += blob
        self.views.append(view)
        accessor = {
            "bufferView": len(self.views) - 1,
            "componentType": component,
            "count": int(array.shape[0]),
            "type": kind,
        }
        if bounds:
            flat = array.reshape(array.shape[0], -1)
            accessor.update(min=flat.min(0).tolist(), max=flat.max(0).tolist())
        self.accessors.append(accessor)
        return len(self.accessors) - 1


def _skin_sets(weights: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """(V, 24) weights -> one or two (joints (V, 4) uint16, weights (V, 4) float32) sets, renormalised."""
    order = np.argsort(-weights, axis=1)[:, :8]
    top = np.take_along_axis(weights, order, axis=1)
    sets = 1 if np.all(top[:, 4:] <= 1e-8) else 2
    top = top[:, : 4 * sets] / top[:, : 4 * sets].sum(1, keepdims=True)
    return [
        (order[:, 4 * s : 4 * s + 4].astype(np.uint16), top[:, 4 * s : 4 * s + 4].astype(np.float32))
        for s in range(sets)
    ]


def glb_bytes(model: BodyModel, motion: SMPLMotion) -> bytes:
    """The ``.glb`` file for ``motion`` on ``model`` (see the module docstring)."""
    rest = rest_joints(model, motion.betas)  # (24, 3), SMPL model space (y up)
    parents = [-1] + model.smpl.parents.tolist()[1:]
    with torch.no_grad():
        betas = torch.from_numpy(np.asarray(motion.betas, np.float32))[None]
        shaped = model.smpl.v_template + torch.einsum("bl,vcl->vc", betas, model.smpl.shapedirs[..., : betas.shape[1]])
    positions = shaped.double().numpy().astype(np.float32)
    frames = motion.num_frames
    poses = motion.full_pose.reshape(frames, 24, 3).astype(np.float64)
    from scipy.spatial.transform import Rotation  # on use: scipy costs ~0.4 s at ComfyUI start-up

    local = Rotation.from_rotvec(poses.reshape(-1, 3)).as_matrix().reshape(frames, 24, 3, 3)
    local[:, 0] = CAMERA_TO_WORLD @ local[:, 0]
    quats = (
        Rotation.from_matrix(local.reshape(-1, 3, 3)).as_quat().reshape(frames, 24, 4).astype(np.float32)
    )  # x, y, z, w
    root = ((rest[0] + motion.transl.astype(np.float64)) @ CAMERA_TO_WORLD.T).astype(np.float32)

    buf = _Buffer()
    attributes = {"POSITION": buf.add(positions, "VEC3", _FLOAT, _ARRAY, bounds=True)}
    for s, (joints, weights) in enumerate(_skin_sets(model.smpl.lbs_weights.double().numpy())):
        attributes[f"JOINTS_{s}"] = buf.add(joints, "VEC4", _USHORT, _ARRAY)
        attributes[f"WEIGHTS_{s}"] = buf.add(weights, "VEC4", _FLOAT, _ARRAY)
    indices = buf.add(model.faces.numpy().astype(np.uint32).reshape(-1), "SCALAR", _UINT, _ELEMENTS)
    inverse_bind = np.tile(np.eye(4, dtype=np.float32), (24, 1, 1))
    inverse_bind[:, 3, :3] = -rest  # column-major storage: the translation sits in the last column
    ibm = buf.add(inverse_bind.reshape(24, 16), "MAT4", _FLOAT)
    times = buf.add((np.arange(frames, dtype=np.float32) / motion.fps), "SCALAR", _FLOAT, bounds=True)
    samplers = [{"input": times, "output": buf.add(root, "VEC3", _FLOAT), "interpolation": "LINEAR"}]
    channels = [{"sampler": 0, "target": {"node": 0, "path": "translation"}}]
    for j in range(24):
        samplers.append({"input": times, "output": buf.add(quats[:, j], "VEC4", _FLOAT), "interpolation": "LINEAR"})
        channels.append({"sampler": len(samplers) - 1, "target": {"node": j, "path": "rotation"}})

    nodes = []
    for j in range(24):
        offset = rest[j] - rest[parents[j]] if parents[j] >= 0 else root[0]
        node = {
            "name": SMPL_JOINT_NAMES[j],
            "translation": [float(v) for v in offset],
            "rotation": quats[0, j].tolist(),
        }
        children = [c for c in range(24) if parents[c] == j]
        if children:
            node["children"] = children
        nodes.append(node)
    nodes.append({"name": "body", "mesh": 0, "skin": 0})
    document = {
        "asset": {"version": "2.0", "generator": "comovi_core.export.gltf"},
        "scene": 0,
        "scenes": [{"nodes": [0, 24]}],
        "nodes": nodes,
        "meshes": [{"name": "smpl", "primitives": [{"attributes": attributes, "indices": indices}]}],
        "skins": [{"joints": list(range(24)), "inverseBindMatrices": ibm, "skeleton": 0}],
        "animations": [{"name": "motion", "samplers": samplers, "channels": channels}],
        "accessors": buf.accessors,
        "bufferViews": buf.views,
        "buffers": [{"byteLength": len(buf.data) + (-len(buf.data) % 4)}],
    }
    text = json.dumps(document, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 4)
    binary = bytes(buf.data) + b"\0" * (-len(buf.data) % 4)
    total = 12 + 8 + len(text) + 8 + len(binary)
    return (
        struct.pack("<4sII", b"glTF", 2, total)
        + struct.pack("<I4s", len(text), b"JSON")
        + text
        + struct.pack("<I4s", len(binary), b"BIN\0")
        + binary
    )


def write_glb(path: str | Path, model: BodyModel, motion: SMPLMotion) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(glb_bytes(model, motion))
    return path
