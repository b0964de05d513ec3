"""Find the model weights on disk, or download them on first use (huggingface_hub, with progress)."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

from .errors import CoMoViError

log = logging.getLogger(__name__)


@contextlib.contextmanager
def open_safetensors(path: str | Path):
    """``safe_open`` (lazy, one tensor at a time) with a truncated or foreign file as a clear CoMoViError."""
    from safetensors import SafetensorError, safe_open

    try:
        handle = safe_open(str(path), framework="pt")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CoMoViError(f"{path} is incomplete or not a safetensors file ({exc}): download or save it again") from exc
    with handle as fh:
        yield fh


def _download(repo: str, target: Path) -> Path:
    try:
        from huggingface_hub import snapshot_download

        log.info("downloading %s to %s (first use)", repo, target)
        return Path(snapshot_download(repo, local_dir=target))
    except Exception as exc:  # no network, no access, disk full: say what to fetch by hand
        raise CoMoViError(f"{repo} is not in {target} and could not be downloaded ({type(exc).__name__}: {exc}); "
                          f"download it from https://huggingface.co/{repo} into {target}") from exc


def resolve_weights(models: Path, base_repo: str, comovi_repo: str, allow_download: bool = True) -> tuple[Path, list[Path]]:
    """-> (the base diffusers folder, the CoMoVi safetensors files). Missing + no download: a clear error."""
    base = models / base_repo.split("/")[-1]
    comovi_dir = models / comovi_repo.split("/")[-1]
    if not (base / "transformer").is_dir():
        if not allow_download:
            raise CoMoViError(f"base weights not found in {base}: download https://huggingface.co/{base_repo} there "
                              "(transformer/, vae/, text_encoder/, tokenizer/)")
        base = _download(base_repo, base)
    files = sorted(comovi_dir.rglob("*.safetensors")) if comovi_dir.is_dir() else []
    if not files:
        if not allow_download:
            raise CoMoViError(f"CoMoVi weights not found in {comovi_dir}: download https://huggingface.co/{comovi_repo} there")
        files = sorted(_download(comovi_repo, comovi_dir).rglob("*.safetensors"))
    return base, files
