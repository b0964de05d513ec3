"""AMASS / SMPL-H ``.npz`` motion files in our y-up world.

An AMASS clip is a plain ``.npz`` of arrays (T frames):

    poses            (T, 156)  axis-angle of SMPL-H's 52 joints: root, 21 body joints, 15 + 15 hand joints
                     (T, 72)   SMPL's 24 joints; (T, 165) SMPL-X's 55 joints; (T, 66) the root and body only
    trans            (T, 3)    metres, in AMASS's Z-up world (the floor at z = 0)
    betas            (16,)     shape (SMPL-H); SMPL uses the first 10
    mocap_framerate  ()        frames per second (``mocap_frame_rate`` in the SMPL-X releases)
    gender           ()        optional: 'male', 'female' or 'neutral' (str or bytes)

SMPL, SMPL-H and SMPL-X share the root and the 21 body joints (SMPL joints 0-21, same order and parents); these are
what we keep. SMPL's two hand joints (22, 23: a point inside each hand, child of the wrist) have no SMPL-H
counterpart, so they are set to zero (a flat hand in line with the forearm); the SMPL-H finger joints are dropped.
The betas are read in our body model's shape space: exact for SMPL-H (which shares SMPL's body), an approximation
for SMPL-X. The Z-up world turns into our y-up world by -90 degrees about x (``AMASS_TO_WORLD``: z -> y, y -> -z),
applied with ``rigid_transform`` so the body turns about its root joint.

The file is read with ``allow_pickle=False``: a pickled object in it is refused, never unpickled.
"""

from __future__ import annotations

import logging
import zipfile
import zlib
from pathlib import Path

import numpy as np

from ..body.model_file import GENDERS
from ..body.smpl import NUM_BETAS, BodyModel
from ..body.world import WorldMotion, rigid_transform
from ..errors import CoMoViError

log = logging.getLogger(__name__)

AMASS_TO_WORLD = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])  # -90 degrees about x: z-up -> y-up
BODY_JOINTS = 22  # the root and the 21 body joints SMPL, SMPL-H and SMPL-X share
POSE_WIDTHS = {156: "SMPL-H (52 joints)", 72: "SMPL (24 joints)", 165: "SMPL-X (55 joints)", 66: "body (22 joints)"}
FRAME_RATE_KEYS = ("mocap_framerate", "mocap_frame_rate")


def npz_keys(path: str | Path) -> list[str]:
    """The array names in the ``.npz`` at ``path`` (nothing is loaded); a clear error when it is not one."""
    path = Path(path)
    if not path.is_file():
        raise CoMoViError(f"motion file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            if not isinstance(npz, np.lib.npyio.NpzFile):
                raise CoMoViError(f"{path} holds a single .npy array, not an .npz archive of named arrays")
            return list(npz.files)
    except CoMoViError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise CoMoViError(f"{path} is not a readable .npz file (truncated or corrupt? {exc})") from exc


def read_npz_arrays(path: Path, keys: list[str]) -> dict[str, np.ndarray]:
    """``keys`` of the ``.npz`` at ``path``, as plain arrays; pickled objects are refused, not unpickled."""
    arrays = {}
    try:
        with np.load(path, allow_pickle=False) as npz:
            for key in keys:
                try:
                    arrays[key] = npz[key]
                except ValueError as exc:
                    if "pickle" not in str(exc):
                        raise
                    raise CoMoViError(
                        f"{path}: '{key}' is a pickled Python object; CoMoVi never unpickles motion files (that "
                        "could run code). Re-save it as plain arrays (e.g. np.savez with gender=np.str_('male'))"
                    ) from exc
    except CoMoViError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise CoMoViError(f"{path}: reading its arrays failed (truncated or corrupt? {exc})") from exc
    return arrays


def read_amass(path: str | Path, model: BodyModel) -> WorldMotion:
    """The AMASS / SMPL-H clip at ``path`` as a ``WorldMotion`` for ``model`` (y-up, metres, the file's fps).

    ``model`` gives the root joint the Z-up -> y-up turn pivots on (it depends on the body shape)."""
    path = Path(path)
    keys = npz_keys(path)
    rate_key = next((k for k in FRAME_RATE_KEYS if k in keys), None)
    _check_keys(path, keys, rate_key)
    arrays = read_npz_arrays(path, ["poses", "trans", "betas", rate_key] + (["gender"] if "gender" in keys else []))
    poses = _numbers(path, arrays, "poses")
    if poses.ndim != 2 or poses.shape[1] not in POSE_WIDTHS:
        widths = ", ".join(f"{w} = {what}" for w, what in POSE_WIDTHS.items())
        raise CoMoViError(f"{path}: 'poses' has shape {poses.shape}; expected (frames, width) with width {widths}")
    count = poses.shape[0]
    if count == 0:
        raise CoMoViError(f"{path}: 'poses' has no frames; the clip is empty")
    trans = _numbers(path, arrays, "trans")
    if trans.shape != (count, 3):
        raise CoMoViError(f"{path}: 'trans' has shape {trans.shape}, expected ({count}, 3): one per frame of 'poses'")
    fps = _numbers(path, arrays, rate_key)
    if fps.size != 1 or not fps.reshape(()) > 0:
        raise CoMoViError(f"{path}: '{rate_key}' must be one positive number of frames per second, got {fps}")
    betas = _betas(path, _numbers(path, arrays, "betas"))
    body_pose = np.zeros((count, 69))
    if poses.shape[1] == 72:  # SMPL: its own 23 body joints, hands included
        body_pose[:] = poses[:, 3:]
    else:  # SMPL-H / SMPL-X / body only: the 21 body joints; SMPL's hand joints 22 and 23 stay zero
        body_pose[:, : 3 * (BODY_JOINTS - 1)] = poses[:, 3 : 3 * BODY_JOINTS]
    global_orient, transl = rigid_transform(model, poses[:, :3], trans, betas, AMASS_TO_WORLD)
    gender = _gender(path, arrays.get("gender"))
    return WorldMotion(global_orient, body_pose, betas, transl, float(fps.reshape(())), gender, path.name)


def _check_keys(path: Path, keys: list[str], rate_key: str | None) -> None:
    found = ", ".join(sorted(keys)) or "nothing"
    if "poses" not in keys and "betas" in keys and "trans" not in keys:
        raise CoMoViError(
            f"{path} holds only a body shape (found: {found}), no motion: AMASS's shape.npz describes a subject; "
            "load one of its motion files (*_poses.npz or *_stageii.npz) instead"
        )
    missing = [k for k in ("poses", "trans", "betas") if k not in keys] + ([] if rate_key else ["mocap_framerate"])
    if missing:
        raise CoMoViError(
            f"{path}: missing {missing} (found: {found}); an AMASS / SMPL-H motion file holds poses, trans, betas "
            "and mocap_framerate"
        )


def _numbers(path: Path, arrays: dict, key: str) -> np.ndarray:
    arr = arrays[key]
    if arr.dtype.kind not in "fiu":
        raise CoMoViError(f"{path}: '{key}' holds {arr.dtype} values, expected numbers")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        idx = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])
        where = f" (frame {idx[0]})" if key in ("poses", "trans") else ""
        raise CoMoViError(f"{path}: '{key}' contains NaN or infinite values, first at index {idx}{where}")
    return arr


def _betas(path: Path, betas: np.ndarray) -> np.ndarray:
    """(B,) or (1, B) betas -> (10,): the first 10 of more (a warning when the rest are not zero), or zero-padded."""
    if betas.ndim == 2 and betas.shape[0] == 1:
        betas = betas[0]
    if betas.ndim != 1:
        raise CoMoViError(f"{path}: 'betas' has shape {betas.shape}, expected one shape vector (16,) or (10,)")
    if betas.size > NUM_BETAS and np.any(betas[NUM_BETAS:] != 0):
        log.warning(
            "%s: %d shape components (betas); SMPL uses %d, the other %d are dropped (the body shape changes a little)",
            path.name,
            betas.size,
            NUM_BETAS,
            betas.size - NUM_BETAS,
        )
    return np.pad(betas[:NUM_BETAS], (0, max(0, NUM_BETAS - betas.size)))


def _gender(path: Path, value) -> str:
    if value is None:
        return "neutral"
    text = value.reshape(-1)[0] if value.size else ""
    text = (text.decode(errors="replace") if isinstance(text, bytes) else str(text)).strip().lower()
    if text not in GENDERS:
        log.warning("%s: unknown gender %r, read as neutral", path.name, text)
        return "neutral"
    return text
