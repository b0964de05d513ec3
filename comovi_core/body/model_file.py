"""Find and read SMPL model files (``.pkl``, chumpy or plain, and ``.npz``) into checked arrays.

SMPL is licensed for non-commercial use and needs registration, so we never ship or download it:
users place ``SMPL_NEUTRAL.pkl`` (or ``.npz``) in ComfyUI's ``models/smpl/`` or pass a path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import BodyModelNotFoundError, CoMoViError
from ..files.safe_pickle import load_pickle_arrays
from .parts import SEGMENTATION_FILENAME, load_segmentation, parts_from_skinning

NUM_JOINTS = 24
NUM_POSE_BASIS = (NUM_JOINTS - 1) * 9  # 207
GENDERS = ("neutral", "male", "female")
STANDIN_KEY = "comovi_standin"  # marks the procedurally built mannequin (not SMPL)
SMPL_DOWNLOAD_HINT = (
    "download SMPL (version 1.1.0 for Python, 'SMPL_NEUTRAL.pkl') from https://smpl.is.tue.mpg.de "
    "(free registration, non-commercial licence) and place it there; ComfyUI users put it in models/smpl/"
)


def candidate_names(gender: str) -> tuple[str, ...]:
    g = gender.upper()
    legacy = {
        "neutral": "basicModel_neutral_lbs_10_207_0_v1.0.0",
        "male": "basicmodel_m_lbs_10_207_0_v1.1.0",
        "female": "basicmodel_f_lbs_10_207_0_v1.1.0",
    }[gender]
    return (f"SMPL_{g}.pkl", f"SMPL_{g}.npz", f"smpl/SMPL_{g}.pkl", f"smpl/SMPL_{g}.npz", f"{legacy}.pkl")


def find_model_file(path: str | Path, gender: str = "neutral") -> Path:
    """Resolve a file or a folder (ComfyUI ``models/smpl``) to one SMPL model file."""
    if gender not in GENDERS:
        raise CoMoViError(f"unknown SMPL gender {gender!r}; choose one of {list(GENDERS)}")
    path = Path(path).expanduser()
    if path.is_file():
        if path.suffix.lower() not in (".pkl", ".npz"):
            raise CoMoViError(f"{path} is not a SMPL model file: expected a .pkl or .npz file")
        return path
    if path.is_dir():
        for name in candidate_names(gender):
            if (path / name).is_file():
                return path / name
        raise BodyModelNotFoundError(f"no SMPL {gender} model found in {path}: {SMPL_DOWNLOAD_HINT}")
    raise BodyModelNotFoundError(f"SMPL model not found at {path}: {SMPL_DOWNLOAD_HINT}")


@dataclass
class BodyModelData:
    """SMPL model arrays, smpl names, validated. V vertices, F faces."""

    v_template: np.ndarray  # (V, 3) rest-pose vertices, metres, y up
    shapedirs: np.ndarray  # (V, 3, B) shape blend shapes, B >= 10
    posedirs: np.ndarray  # (V, 3, 207) pose-corrective blend shapes
    J_regressor: np.ndarray  # (24, V) dense joint regressor
    weights: np.ndarray  # (V, 24) skinning weights
    kintree_table: np.ndarray  # (2, 24) parents in row 0
    f: np.ndarray  # (F, 3) triangle vertex ids
    part_ids: np.ndarray  # (V,) motion-map part index 0..23
    source: str  # file it came from, or a description
    is_standin: bool = False  # True for the built-in mannequin, which is NOT SMPL

    @property
    def num_vertices(self) -> int:
        return self.v_template.shape[0]


def _expect(arrays: dict, key: str, shape: tuple, where: str) -> np.ndarray:
    if key not in arrays:
        raise CoMoViError(
            f"{where}: missing '{key}'; this is not a SMPL model file (SMPL-X/MANO files are not supported)"
        )
    arr = np.asarray(arrays[key])
    if arr.ndim != len(shape) or any(s is not None and s != a for s, a in zip(shape, arr.shape)):
        want = "(" + ", ".join("any" if s is None else str(s) for s in shape) + ")"
        raise CoMoViError(
            f"{where}: '{key}' has shape {arr.shape}, expected {want}; is this a SMPL (not SMPL-X/SMPL-H) model?"
        )
    if arr.dtype.kind in "fc" and not np.isfinite(arr).all():
        raise CoMoViError(f"{where}: '{key}' contains NaN or infinite values; the file is corrupt, re-download it")
    return arr


def model_data_from_arrays(arrays: dict, source: str, part_ids: np.ndarray | None = None) -> BodyModelData:
    """Validate raw SMPL arrays (as stored in the official files) into BodyModelData."""
    v = _expect(arrays, "v_template", (None, 3), source).astype(np.float32)
    n = v.shape[0]
    posedirs = np.asarray(arrays.get("posedirs", np.zeros(0)))
    if posedirs.ndim == 2 and posedirs.shape == (n * 3, NUM_POSE_BASIS):
        posedirs = posedirs.reshape(n, 3, NUM_POSE_BASIS)
    data = BodyModelData(
        v_template=v,
        shapedirs=_expect(arrays, "shapedirs", (n, 3, None), source).astype(np.float32),
        posedirs=_expect({"posedirs": posedirs}, "posedirs", (n, 3, NUM_POSE_BASIS), source).astype(np.float32),
        J_regressor=_expect(arrays, "J_regressor", (NUM_JOINTS, n), source).astype(np.float32),
        weights=_expect(arrays, "weights", (n, NUM_JOINTS), source).astype(np.float32),
        kintree_table=_expect(arrays, "kintree_table", (2, NUM_JOINTS), source).astype(np.int64),
        f=_expect(arrays, "f", (None, 3), source).astype(np.int64),
        part_ids=np.zeros(n, np.int64),
        source=source,
        is_standin=STANDIN_KEY in arrays,
    )
    if data.shapedirs.shape[2] < 10:
        raise CoMoViError(f"{source}: 'shapedirs' has {data.shapedirs.shape[2]} shape components, SMPL has at least 10")
    if data.f.min() < 0 or data.f.max() >= n:
        raise CoMoViError(f"{source}: faces 'f' index vertices outside 0..{n - 1}; the file is corrupt")
    data.part_ids = parts_from_skinning(data.weights) if part_ids is None else part_ids
    return data


def load_model_data(path: str | Path, gender: str = "neutral") -> BodyModelData:
    """Load a SMPL model from a file or folder; part ids from a neighbouring segmentation file if any."""
    file = find_model_file(path, gender)
    if file.suffix.lower() == ".npz":
        try:
            with np.load(file, allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
        except (OSError, ValueError) as exc:
            raise CoMoViError(f"{file} is not a readable SMPL .npz file ({exc}); re-download or re-convert it") from exc
    else:
        arrays = load_pickle_arrays(file)
    segmentation = file.parent / SEGMENTATION_FILENAME
    n = np.asarray(arrays.get("v_template", np.zeros((0, 3)))).shape[0]
    part_ids = load_segmentation(segmentation, n) if segmentation.is_file() else None
    return model_data_from_arrays(arrays, str(file), part_ids)
