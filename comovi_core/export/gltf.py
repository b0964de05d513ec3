"""Export a SMPL motion as an animated, skinned glTF 2.0 binary (``.glb``): Blender, Unreal, Maya, Houdini, three.js.

One file holds the shaped body mesh in its rest pose (T-pose, betas applied), a skin on the skeleton's bones
(SMPL's 24 joints, or a retargeted skeleton's: Mixamo, UE5, VRM) with SMPL's skinning weights moved onto the
bones that carry their joints (the strongest 4, or 8 when a vertex has more, renormalised), and one animation:
per-bone rotations and the root's translation, one key per motion frame (LINEAR). Bones rest in the skeleton's
rest pose (UE5: the A-pose) with world-aligned axes, as in the BVH export; the inverse bind matrices bind the
T-pose mesh to it. In-between bones (UE5 ``spine_04``) carry no vertices.
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

from ..body.mannequin import PARENTS
from ..body.motion_file import SMPLMotion
from ..body.smpl import BodyModel
from ..files.atomic import atomic_path
from ..retarget.animation import SkeletonAnimation, rest_positions
from .skeleton import ExportOptions, export_animation, rest_joints

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
    """(V, J) weights -> one or two (joints (V, 4) uint16, weights (V, 4) float32) sets, renormalised."""
    order = np.argsort(-weights, axis=1)[:, :8]
    top = np.take_along_axis(weights, order, axis=1)
    sets = 1 if np.all(top[:, 4:] <= 1e-8) else 2
    top = top[:, : 4 * sets] / top[:, : 4 * sets].sum(1, keepdims=True)
    return [
        (order[:, 4 * s : 4 * s + 4].astype(np.uint16), top[:, 4 * s : 4 * s + 4].astype(np.float32))
        for s in range(sets)
    ]


def _skin(model: BodyModel, betas: np.ndarray, animation: SkeletonAnimation) -> tuple[np.ndarray, np.ndarray]:
    """(V, J) skinning weights on the animation's bones and (J, 4, 4) inverse bind matrices (row-major).

    SMPL joint j's weights go to the bone that carries j, or to the nearest carried ancestor's (hand tips). That
    bone's inverse bind matrix [A_j | -A_j r_j] (A_j its rest alignment, r_j SMPL's rest joint) binds the T-pose
    mesh to the bone in the target's rest pose, so the skin follows SMPL's linear blend skinning exactly."""
    rest = rest_joints(model, betas)
    joints = animation.joints or list(range(24))
    bind = np.tile(np.eye(3), (len(joints), 1, 1)) if animation.bind is None else animation.bind
    bone_of = {j: b for b, j in enumerate(joints) if j is not None}
    smpl_weights = model.smpl.lbs_weights.double().numpy()
    weights = np.zeros((smpl_weights.shape[0], len(joints)))
    for j in range(24):
        carrier = j
        while carrier not in bone_of:
            carrier = PARENTS[carrier]
        weights[:, bone_of[carrier]] += smpl_weights[:, j]
    inverse_bind = np.tile(np.eye(4), (len(joints), 1, 1))
    bone_rest = rest_positions(animation)
    for b, j in enumerate(joints):
        if j is None:  # carries no vertices: the inverse of its rest place
            inverse_bind[b, :3, 3] = -bone_rest[b]
        else:
            inverse_bind[b, :3, :3] = bind[b]
            inverse_bind[b, :3, 3] = -bind[b] @ rest[j]
    return weights, inverse_bind


def glb_bytes(model: BodyModel, motion: SMPLMotion, options: ExportOptions | None = None) -> bytes:
    """The ``.glb`` file for ``motion`` on ``model``, on the skeleton and with the clip options of ``options``
    (see the module docstring)."""
    animation = export_animation(model, motion, options or ExportOptions())
    count, frames, fps = len(animation.names), animation.num_frames, animation.fps
    with torch.no_grad():
        betas = torch.from_numpy(np.asarray(motion.betas, np.float32))[None]
        shaped = model.smpl.v_template + torch.einsum("bl,vcl->vc", betas, model.smpl.shapedirs[..., : betas.shape[1]])
    positions = shaped.double().numpy().astype(np.float32)
    from scipy.spatial.transform import Rotation  # on use: scipy costs ~0.4 s at ComfyUI start-up

    quats = Rotation.from_matrix(animation.rotations.reshape(-1, 3, 3)).as_quat()  # x, y, z, w
    quats = quats.reshape(frames, count, 4).astype(np.float32)
    root = animation.root_position.astype(np.float32)
    bone_weights, inverse_bind = _skin(model, np.asarray(motion.betas, np.float64), animation)

    buf = _Buffer()
    attributes = {"POSITION": buf.add(positions, "VEC3", _FLOAT, _ARRAY, bounds=True)}
    for s, (joints, weights) in enumerate(_skin_sets(bone_weights)):
        attributes[f"JOINTS_{s}"] = buf.add(joints, "VEC4", _USHORT, _ARRAY)
        attributes[f"WEIGHTS_{s}"] = buf.add(weights, "VEC4", _FLOAT, _ARRAY)
    indices = buf.add(model.faces.numpy().astype(np.uint32).reshape(-1), "SCALAR", _UINT, _ELEMENTS)
    stored = np.ascontiguousarray(inverse_bind.transpose(0, 2, 1)).astype(np.float32)  # glTF stores column-major
    ibm = buf.add(stored.reshape(count, 16), "MAT4", _FLOAT)
    times = buf.add((np.arange(frames, dtype=np.float32) / fps), "SCALAR", _FLOAT, bounds=True)
    samplers = [{"input": times, "output": buf.add(root, "VEC3", _FLOAT), "interpolation": "LINEAR"}]
    channels = [{"sampler": 0, "target": {"node": 0, "path": "translation"}}]
    for b in range(count):
        samplers.append({"input": times, "output": buf.add(quats[:, b], "VEC4", _FLOAT), "interpolation": "LINEAR"})
        channels.append({"sampler": len(samplers) - 1, "target": {"node": b, "path": "rotation"}})

    nodes = []
    for b in range(count):
        offset = animation.offsets[b] if animation.parents[b] >= 0 else root[0]
        node = {
            "name": animation.names[b],
            "translation": [float(v) for v in offset],
            "rotation": quats[0, b].tolist(),
        }
        children = animation.children(b)
        if children:
            node["children"] = children
        nodes.append(node)
    nodes.append({"name": "body", "mesh": 0, "skin": 0})
    document = {
        "asset": {"version": "2.0", "generator": "comovi_core.export.gltf"},
        "scene": 0,
        "scenes": [{"nodes": [0, count]}],
        "nodes": nodes,
        "meshes": [{"name": "smpl", "primitives": [{"attributes": attributes, "indices": indices}]}],
        "skins": [{"joints": list(range(count)), "inverseBindMatrices": ibm, "skeleton": 0}],
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


def write_glb(path: str | Path, model: BodyModel, motion: SMPLMotion, options: ExportOptions | None = None) -> Path:
    path = Path(path)
    data = glb_bytes(model, motion, options)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path
