"""Training from a prepared cache (``python -m comovi_core.train --cache DIR``): bounded memory, no VAE, no umT5.

``CacheData`` streams samples: it keeps one shard open (``safetensors.safe_open``: the file is memory-mapped, and
only the tensors of the sample asked for are read) and moves on to the next one when the order
(``comovi_core.training.data_order``: shards shuffled per epoch, samples shuffled within) gets there, so memory
does not grow with the size of the data set. Every shard holds one bucket (frames, height, width), so a sample
never mixes shapes; ``check_cache`` refuses a cache whose size differs from the run's --frames/--height/--width.
Several caches (``--cache A B``, one size each: prepare the same data folder once per size) train together,
every clip at its own size; their shards join one epoch order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import CoMoViError
from ..files.weights import checked_safe_open, read_safetensors
from .cache_format import CACHE_FIX, EMPTY_PROMPT, SMPL_KEYS, bucket_name, pad_context, read_manifest
from .data import Sample


@dataclass
class SMPLTargets:
    """The SMPL per frame a clip trains the 3D head on (smplx names, as ``SMPLMotion``)."""

    global_orient: np.ndarray  # (F, 3)
    body_pose: np.ndarray  # (F, 69)
    betas: np.ndarray  # (10,)

    @property
    def full_pose(self) -> np.ndarray:
        """(F, 72) axis-angle of all 24 joints, as ``SMPLMotion.full_pose``."""
        return np.concatenate([self.global_orient, self.body_pose], axis=-1)


def cache_size(manifest: dict) -> tuple[int, int, int]:
    """(frames, height, width) of a cache."""
    config = manifest["config"]
    return config["frames"], config["height"], config["width"]


def read_manifests(folders: list[Path], flags: dict) -> list[dict]:
    """The manifests of the --cache folders. Several caches are buckets (each its own size), so --frames/--height/
    --width (in ``flags``, the values given) cannot pick one size for all of them; they must share their encoders."""
    folders = [Path(f) for f in folders]
    manifests = [read_manifest(f) for f in folders]
    if len(folders) == 1:
        return manifests
    given = [f"--{k}" for k in ("frames", "height", "width") if flags.get(k) is not None]
    if given:
        raise CoMoViError(
            f"{'/'.join(given)} with {len(folders)} caches: each cache trains at its own size (its bucket); leave "
            "those flags out, or give one cache"
        )
    for folder, manifest in zip(folders[1:], manifests[1:]):
        for key in ("preset", "vae", "text_encoder", "text_len", "text_dim"):
            if manifest["config"][key] != manifests[0]["config"][key]:
                raise CoMoViError(
                    f"--cache {folder} was prepared with {key} {manifest['config'][key]!r}, {folders[0]} with "
                    f"{manifests[0]['config'][key]!r}: caches that train together need the same model, VAE and "
                    "text encoder; prepare them again with the same --preset/--base/--vae"
                )
    names = [bucket_name(cache_size(m)) for m in manifests]
    if len(set(names)) < len(names):
        raise CoMoViError(
            f"two --cache folders hold the same size ({', '.join(names)}): give each size once (prepare several "
            "data folders of one size into one cache)"
        )
    return manifests


def check_caches(manifests: list[dict], folders: list[Path], preset: str, frames: int, height: int, width: int):
    """``check_cache`` of each cache: one cache at the run's size; several, each at its own."""
    for manifest, folder in zip(manifests, folders):
        size = (frames, height, width) if len(manifests) == 1 else cache_size(manifest)
        check_cache(manifest, Path(folder), preset, *size)


def check_cache(manifest: dict, folder: Path, preset: str, frames: int, height: int, width: int) -> None:
    """Refuse a cache prepared for another model or size than the run's flags."""
    config = manifest["config"]
    if config["preset"] != preset:
        raise CoMoViError(
            f"--cache {folder} was prepared for --preset {config['preset']} (its VAE and text "
            f"encoder), this run is --preset {preset}: train with --preset {config['preset']} or "
            f"prepare the cache again with --preset {preset}"
        )
    wanted = bucket_name((frames, height, width))
    other = sorted({bucket_name(s["bucket"]) for s in manifest["shards"]} - {wanted})
    if other:
        raise CoMoViError(
            f"--cache {folder} holds clips of {', '.join(other)} (frames x height x width) but this run "
            f"asks for {wanted} (--frames/--height/--width): leave those flags out to train at the "
            f"cache's size, or prepare a cache at {wanted}"
        )
    if manifest["clips"] < 1:
        raise CoMoViError(f"--cache {folder} holds no clips: see its report.json for why each was skipped")
    for shard in manifest["shards"]:  # headers only (memory-mapped): a missing or cut shard is found before training
        open_shard(folder, shard["file"])


def open_shard(folder: Path, name: str):
    """The ``safe_open`` handle of the shard file ``name`` of the cache ``folder``; CoMoViError if missing or cut."""
    path = Path(folder) / name
    if not path.is_file():
        raise CoMoViError(
            f"{path} is missing from the cache {folder}: prepare the cache again "
            "(python -m comovi_core.prepare, the same command: only missing shards are made)"
        )
    return checked_safe_open(path, CACHE_FIX)


class CacheData:
    """The samples of one or more cache folders (the shards of all of them, in order: each cache a size bucket), read
    one at a time; ``sizes`` are the clips per shard (for ``EpochOrder``)."""

    def __init__(self, folders, manifest: dict | None = None):
        folders = [Path(f) for f in ([folders] if isinstance(folders, (str, Path)) else folders)]
        self.folder = folders[0]
        manifests = [manifest] if manifest is not None else [read_manifest(f) for f in folders]
        self.manifest = manifests[0]
        self.shards = [{**shard, "folder": f} for f, m in zip(folders, manifests) for shard in m["shards"]]
        self.sizes = [len(s["clips"]) for s in self.shards]
        self.text_len = self.manifest["config"]["text_len"]
        self._open: tuple[int, object] | None = None  # (shard index, safe_open handle)
        self._empty: torch.Tensor | None = None

    def _handle(self, shard: int):
        if self._open is None or self._open[0] != shard:
            self.close()
            self._open = (shard, open_shard(self.shards[shard]["folder"], self.shards[shard]["file"]))
        return self._open[1]

    def read(self, shard: int, item: int, device) -> Sample:
        """Sample ``item`` of shard ``shard`` (numbers as in the manifest)."""
        handle = self._handle(shard)

        def get(key):
            return handle.get_tensor(f"{item}.{key}")

        latents = [get(k).float()[None].to(device) for k in ("rgb", "motion_map")]
        motion = SMPLTargets(*(get(k).numpy() for k in SMPL_KEYS)) if self.shards[shard]["smpl"][item] else None
        return Sample(*latents, motion, pad_context(get("context"), self.text_len).to(device))

    def empty_context(self, device) -> torch.Tensor:
        """The empty prompt's embedding (1, text_len, D), for --text-dropout."""
        if self._empty is None:
            empty = read_safetensors(self.folder / EMPTY_PROMPT, CACHE_FIX)
            self._empty = pad_context(empty["context"], self.text_len)
        return self._empty.to(device)

    def close(self) -> None:
        self._open = None  # safe_open handles close (unmap) when released
