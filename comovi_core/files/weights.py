"""Find the model weights on disk, or download them on first use (huggingface_hub, with progress)."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

from ..errors import CoMoViError

log = logging.getLogger(__name__)


def checked_safe_open(path: str | Path, fix: str = "download or save it again", reader: str = "mmap"):
    """``safe_open`` (lazy, one tensor at a time) with a truncated or foreign file as a clear CoMoViError; every
    safetensors reader of the library goes through here. ``fix`` ends the message (how to get a good file).

    ``reader``: "mmap" maps the file, and tensors read from it may stay backed by the mapped pages; "copy" reads
    each tensor into memory of its own (safetensors >= 0.8 ``backend="pread"``, else mmap), so a loader that keeps
    what it reads holds no mapped pages beyond the tensor at hand, and resident memory is what the model holds."""
    from safetensors import SafetensorError, safe_open

    try:
        if reader == "copy":
            try:
                return safe_open(str(path), framework="pt", backend="pread")
            except TypeError:  # safetensors < 0.8: no choice of reader
                pass
        return safe_open(str(path), framework="pt")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CoMoViError(f"{path} is incomplete or not a safetensors file ({exc}): {fix}") from exc


@contextlib.contextmanager
def open_safetensors(path: str | Path, fix: str = "download or save it again", reader: str = "mmap"):
    """``checked_safe_open`` as a context manager (the file is unmapped on exit)."""
    with checked_safe_open(path, fix, reader) as fh:
        yield fh


def read_safetensors(path: str | Path, fix: str = "download or save it again") -> dict:
    """Every tensor of a (small) safetensors file, as ``safetensors.torch.load_file``, through ``open_safetensors``."""
    with open_safetensors(path, fix) as fh:
        return {name: fh.get_tensor(name) for name in fh.keys()}


def _download(repo: str, target: Path) -> Path:
    try:
        from huggingface_hub import snapshot_download

        log.info("downloading %s to %s (first use)", repo, target)
        return Path(snapshot_download(repo, local_dir=target))
    except Exception as exc:  # no network, no access, disk full: say what to fetch by hand
        raise CoMoViError(
            f"{repo} is not in {target} and could not be downloaded ({type(exc).__name__}: {exc}); "
            f"download it from https://huggingface.co/{repo} into {target}"
        ) from exc


def resolve_weights(
    models: Path, base_repo: str, comovi_repo: str, allow_download: bool = True
) -> tuple[Path, list[Path]]:
    """-> (the base diffusers folder, the CoMoVi safetensors files). Missing + no download: a clear error."""
    base = models / base_repo.split("/")[-1]
    comovi_dir = models / comovi_repo.split("/")[-1]
    if not (base / "transformer").is_dir():
        if not allow_download:
            raise CoMoViError(
                f"base weights not found in {base}: download https://huggingface.co/{base_repo} there "
                "(transformer/, vae/, text_encoder/, tokenizer/)"
            )
        base = _download(base_repo, base)
    files = sorted(comovi_dir.rglob("*.safetensors")) if comovi_dir.is_dir() else []
    if not files:
        if not allow_download:
            raise CoMoViError(
                f"CoMoVi weights not found in {comovi_dir}: download https://huggingface.co/{comovi_repo} there"
            )
        files = sorted(_download(comovi_repo, comovi_dir).rglob("*.safetensors"))
    return base, files
