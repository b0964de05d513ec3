"""Atomic file writes: write beside the target, then rename, so no half-written file is ever seen."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

from .errors import CoMoViError


def check_writable_folder(folder: str | Path, what: str = "output folder") -> None:
    """Refuse, before any work, a folder that is a file, lies under a file, or cannot be written."""
    folder = Path(folder)
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if existing == folder and not folder.is_dir():
        raise CoMoViError(f"the {what} {folder} is a file, not a folder: choose a folder name")
    if not existing.is_dir():
        raise CoMoViError(f"the {what} {folder} lies under {existing}, which is a file: choose a folder elsewhere")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise CoMoViError(f"the {what} {folder}: {existing} is not writable: choose a folder you can write to")


def check_writable_file(path: str | Path, what: str = "output file") -> None:
    """Refuse, before any work, a file target that is an existing folder, or whose folder is a file, lies under a
    file or cannot be written (``check_writable_folder``)."""
    path = Path(path)
    if path.is_dir():
        raise CoMoViError(f"the {what} {path} is an existing folder, not a file: choose a file name")
    check_writable_folder(path.parent, f"folder of {path.name}")


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path in the target's folder; it replaces ``path`` only if the block succeeds."""
    path = Path(path)
    check_writable_file(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; outputs are ordinary files
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
