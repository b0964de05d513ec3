"""Atomic writes: a file or a folder of files is built beside its target, then renamed into place, so no
half-written output is ever seen."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from ..errors import CoMoViError


def check_writable_folder(folder: str | Path, what: str = "output folder") -> None:
    """Refuse, before any work, a folder that is a file, lies under a file, or cannot be written. Writability is
    tried for real (an empty folder made and removed in the nearest existing folder): permission bits do not tell
    it for root, nor for file systems such as /proc that refuse new entries."""
    folder = Path(folder)
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if existing == folder and not folder.is_dir():
        raise CoMoViError(f"the {what} {folder} is a file, not a folder: choose a folder name")
    if not existing.is_dir():
        raise CoMoViError(f"the {what} {folder} lies under {existing}, which is a file: choose a folder elsewhere")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise CoMoViError(f"the {what} {folder}: {existing} is not writable: choose a folder you can write to")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".comovi-write-test-", dir=existing))
    except OSError as exc:
        raise CoMoViError(_unwritable(folder, what, existing, exc)) from None


def _unwritable(folder: Path, what: str, existing: Path, exc: OSError) -> str:
    reason = exc.strerror or type(exc).__name__
    return f"the {what} {folder} cannot be written: {existing} takes no new entries ({reason}); choose another {what}"


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


@contextlib.contextmanager
def staged_folder(folder: str | Path, ours: Callable[[str], bool], marker: str | None = None) -> Iterator[Path]:
    """Yield an empty hidden folder beside ``folder`` to write into; only when the block succeeds are its files
    published into ``folder`` (``publish_folder``). On failure the staging folder is removed, ``folder`` untouched."""
    folder = Path(folder)
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.partial-", dir=folder.parent))
    except OSError as exc:  # refused after check_writable_folder passed (e.g. the folder changed meanwhile)
        raise CoMoViError(_unwritable(folder, "output folder", folder.parent, exc)) from None
    try:
        yield staging
        publish_folder(staging, folder, ours, marker)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def publish_folder(staging: Path, folder: Path, ours: Callable[[str], bool], marker: str | None = None) -> None:
    """Move the files of ``staging`` into ``folder``. A new folder appears whole in one rename. Into an existing
    one: the ``marker`` file (a completion marker such as meta.json) is removed first and written last, files we
    wrote before (``ours(name)``) that this output lacks are removed (no stale frame or output passes for this
    one's), the others replaced; files we did not write stay."""
    os.chmod(staging, 0o755)  # mkdtemp makes a private folder; outputs are ordinary folders
    if not folder.exists():
        os.rename(staging, folder)
        return
    new = {p.name for p in staging.iterdir()}
    if marker is not None:
        (folder / marker).unlink(missing_ok=True)
    for old in folder.iterdir():
        if old.name not in new and ours(old.name) and old.is_file():
            old.unlink()
    for name in sorted(new, key=lambda n: n == marker):  # the marker last
        os.replace(staging / name, folder / name)
