"""Restricted unpickling: one unpickler that resolves only the globals it is given (SMPL model files here,
estimator checkpoints in ``recovery.hmr.state_dict``).

Official SMPL ``.pkl`` files are Python-2 pickles that hold chumpy ``Ch`` objects and scipy sparse
matrices. We read them WITHOUT importing chumpy (unmaintained, broken on current numpy) and without
ever running code from the file: the unpickler below resolves only numpy array/dtype rebuilders and
inert stand-ins for ``chumpy.ch.Ch`` and scipy sparse matrices, and refuses every other global.
"""

from __future__ import annotations

import io
import pickle
import types
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CoMoViError, UnsafePickleError


class _StateHolder:
    """An inert object that only remembers the state a pickle gave it."""

    def __setstate__(self, state: Any) -> None:
        self.state = state


class ChumpyStandIn(_StateHolder):
    """Stands in for ``chumpy.ch.Ch``: a leaf Ch pickles its value as ``state['x']``."""


class SparseStandIn(_StateHolder):
    """Stands in for a scipy sparse matrix (csc / csr / coo); densified on conversion."""

    format = ""


def _sparse(fmt: str) -> type:
    return type(f"Sparse_{fmt}", (SparseStandIn,), {"format": fmt})


_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): np.ndarray.__reduce__(np.zeros(1))[0],
    ("numpy._core.multiarray", "_reconstruct"): np.ndarray.__reduce__(np.zeros(1))[0],
    ("numpy.core.multiarray", "scalar"): np.float64(0).__reduce__()[0],
    ("numpy._core.multiarray", "scalar"): np.float64(0).__reduce__()[0],
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("copy_reg", "_reconstructor"): None,  # filled below: copyreg._reconstructor
    ("copyreg", "_reconstructor"): None,
    ("__builtin__", "object"): object,
    ("builtins", "object"): object,
    ("__builtin__", "set"): set,
    ("builtins", "set"): set,
    ("__builtin__", "frozenset"): frozenset,
    ("builtins", "frozenset"): frozenset,
    ("chumpy.ch", "Ch"): ChumpyStandIn,
}
for _mod in (
    "scipy.sparse.csc",
    "scipy.sparse._csc",
    "scipy.sparse.csr",
    "scipy.sparse._csr",
    "scipy.sparse.coo",
    "scipy.sparse._coo",
):
    _fmt = _mod.rsplit(".", 1)[1].lstrip("_")
    _ALLOWED[(_mod, f"{_fmt}_matrix")] = _sparse(_fmt)


def _reconstructor(cls: type, base: type, state: Any) -> Any:
    """``copyreg._reconstructor`` limited to the stand-in classes above."""
    if not (isinstance(cls, type) and issubclass(cls, _StateHolder)) or base is not object:
        raise UnsafePickleError(f"refusing to rebuild {cls!r} from a pickle")
    return object.__new__(cls)


def _latin1_bytes(text: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it for bytes: latin-1 text to bytes, nothing else."""
    if not isinstance(text, str) or encoding.replace("-", "").lower() != "latin1":
        raise UnsafePickleError("refusing a pickle that calls _codecs.encode with anything but latin-1 text")
    return text.encode("latin1")


_ALLOWED[("_codecs", "encode")] = _latin1_bytes
_ALLOWED[("copy_reg", "_reconstructor")] = _reconstructor
_ALLOWED[("copyreg", "_reconstructor")] = _reconstructor


def _refuse_smpl(module: str, name: str) -> Any:
    raise UnsafePickleError(
        f"refusing to load '{module}.{name}' from a pickle: SMPL model files only hold arrays. "
        "The file is not an official SMPL model or has been tampered with; re-download it from "
        "https://smpl.is.tue.mpg.de"
    )


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the globals in ``allowed`` ((module, name) -> object); any other global goes to ``unknown``
    (module, name) -> object, which refuses it or returns an inert stand-in. Nothing named by the file is imported."""

    def __init__(self, file, *, allowed: Mapping[tuple[str, str], Any], unknown: Callable[[str, str], Any], **kwargs):
        super().__init__(file, **kwargs)
        self._allowed = allowed
        self._unknown = unknown

    def find_class(self, module: str, name: str) -> Any:
        found = self._allowed.get((module, name))
        return self._unknown(module, name) if found is None else found


def pickle_module(allowed: Mapping[tuple[str, str], Any], unknown: Callable[[str, str], Any]) -> types.ModuleType:
    """A module to pass as ``torch.load(..., pickle_module=...)`` whose unpickler is ``RestrictedUnpickler``."""
    module = types.ModuleType("comovi_restricted_pickle")

    class Unpickler(RestrictedUnpickler):
        def __init__(self, file, **kwargs):
            super().__init__(file, allowed=allowed, unknown=unknown, **kwargs)

    module.Unpickler = Unpickler
    module.__dict__["load"] = lambda file, **kwargs: Unpickler(file, **kwargs).load()
    return module


def _to_array(value: Any, key: str) -> Any:
    if isinstance(value, ChumpyStandIn):
        state = getattr(value, "state", None)
        if not isinstance(state, dict) or "x" not in state:
            raise CoMoViError(
                f"'{key}' is a chumpy expression, not a stored array; only plain chumpy arrays can be read. "
                "Convert the model once with a chumpy-enabled environment, or use the .npz version"
            )
        return np.asarray(state["x"])
    if isinstance(value, SparseStandIn):
        return _densify(value, key)
    return value


def _densify(value: SparseStandIn, key: str) -> np.ndarray:
    state = getattr(value, "state", None) or {}
    shape = state.get("_shape", state.get("shape"))
    data = np.asarray(state.get("data"))
    try:
        dense = np.zeros(tuple(int(s) for s in shape), dtype=data.dtype)
        if value.format == "coo":
            np.add.at(dense, (np.asarray(state["row"]), np.asarray(state["col"])), data)
            return dense
        indices, indptr = np.asarray(state["indices"]), np.asarray(state["indptr"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CoMoViError(f"'{key}' is a sparse matrix whose stored state could not be read: {exc}") from exc
    major = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
    if value.format == "csc":
        np.add.at(dense, (indices, major), data)
    else:
        np.add.at(dense, (major, indices), data)
    return dense


def load_pickle_arrays(path: str | Path) -> dict[str, Any]:
    """Read a (possibly chumpy) SMPL pickle into plain numpy arrays and strings."""
    raw = Path(path).read_bytes()
    try:
        obj = RestrictedUnpickler(io.BytesIO(raw), allowed=_ALLOWED, unknown=_refuse_smpl, encoding="latin1").load()
    except UnsafePickleError:
        raise
    except Exception as exc:  # a corrupt or truncated file: say which one
        raise CoMoViError(
            f"{path} is not a readable SMPL pickle ({type(exc).__name__}: {exc}); re-download it"
        ) from exc
    if not isinstance(obj, dict):
        raise CoMoViError(f"{path} does not hold a SMPL model (expected a dict of arrays, found {type(obj).__name__})")
    return {str(k): _to_array(v, str(k)) for k, v in obj.items()}
