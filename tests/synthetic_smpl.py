"""Write the stand-in body in the file layouts real SMPL models come in (never a real SMPL file).

- plain pickle: a dict of numpy arrays (as ``SMPL_NEUTRAL.pkl`` after chumpy-free conversion);
- chumpy pickle: like the official files, arrays wrapped in ``chumpy.ch.Ch`` objects and the joint
  regressor a scipy sparse matrix. chumpy itself is not installed: a stand-in class registered under
  the module name ``chumpy.ch`` only while pickling produces the same opcodes (GLOBAL 'chumpy.ch Ch',
  NEWOBJ, BUILD with ``{'x': array}``);
- npz: ``np.savez`` of the arrays.
"""

from __future__ import annotations

import pickle
import sys
import types
from pathlib import Path

import numpy as np
import scipy.sparse

from comovi_core.body.mannequin import mannequin_arrays
from comovi_core.body.model_file import STANDIN_KEY


def smpl_like_arrays(mark_standin: bool = False) -> dict:
    arrays = dict(mannequin_arrays())
    if not mark_standin:
        arrays.pop(STANDIN_KEY)
    return arrays


def write_plain_pickle(path: Path, arrays: dict | None = None) -> Path:
    path.write_bytes(pickle.dumps(arrays or smpl_like_arrays(), protocol=2))
    return path


def write_npz(path: Path, arrays: dict | None = None) -> Path:
    np.savez(path, **(arrays or smpl_like_arrays()))
    return path


def write_chumpy_pickle(path: Path, arrays: dict | None = None) -> Path:
    arrays = dict(arrays or smpl_like_arrays())
    chumpy = types.ModuleType("chumpy")
    ch = types.ModuleType("chumpy.ch")

    class Ch:  # same module path and state layout as chumpy's leaf Ch
        def __init__(self, x):
            self.x = x
            self.label = None

    Ch.__module__, Ch.__qualname__ = "chumpy.ch", "Ch"
    ch.Ch = Ch
    saved = {k: sys.modules.get(k) for k in ("chumpy", "chumpy.ch")}
    sys.modules.update({"chumpy": chumpy, "chumpy.ch": ch})
    try:
        for key in ("v_template", "shapedirs", "posedirs", "weights", "J"):
            arrays[key] = Ch(arrays[key])
        arrays["J_regressor"] = scipy.sparse.csc_matrix(arrays["J_regressor"])
        path.write_bytes(pickle.dumps(arrays, protocol=2))
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    return path


SMPLH_HAND_JOINTS = 15  # per hand: five fingers of three joints


def smplh_like_arrays() -> dict:
    """The stand-in body in SMPL-H's layout (52 joints): SMPL's root and 21 body joints, then 15 joints per hand
    (five chains of three from each wrist, all placed at SMPL's hand joint). Each hand's vertices are skinned to its
    first finger joint, so with flat hands the body is SMPL's with joints 22 and 23 unposed."""
    smpl = smpl_like_arrays()
    parents, joints = list(smpl["kintree_table"][0, :22]), [smpl["J_regressor"][i] for i in range(22)]
    weights = np.zeros((smpl["weights"].shape[0], 22 + 2 * SMPLH_HAND_JOINTS))
    weights[:, :22] = smpl["weights"][:, :22]
    for wrist, hand in ((20, 22), (21, 23)):
        first = len(parents)
        weights[:, first] = smpl["weights"][:, hand]
        for finger in range(5):
            chain = [first + 3 * finger + k for k in range(3)]
            parents += [wrist, chain[0], chain[1]]
            joints += [smpl["J_regressor"][hand]] * 3
    posedirs = np.zeros(smpl["posedirs"].shape[:2] + (9 * (len(parents) - 1),))
    posedirs[..., : 9 * 21] = smpl["posedirs"][..., : 9 * 21]  # the 21 body joints' correctives
    kintree = np.stack([np.array(parents, np.int64), np.arange(len(parents))])
    kintree[0, 0] = -1
    return {
        **smpl,
        "J_regressor": np.stack(joints),
        "weights": weights,
        "kintree_table": kintree,
        "posedirs": posedirs,
        "J": np.stack(joints) @ smpl["v_template"],
        "hands_componentsl": np.eye(3 * SMPLH_HAND_JOINTS),
        "hands_componentsr": np.eye(3 * SMPLH_HAND_JOINTS),
        "hands_meanl": np.zeros(3 * SMPLH_HAND_JOINTS),
        "hands_meanr": np.zeros(3 * SMPLH_HAND_JOINTS),
    }
