"""The prepared training cache on disk.

Written by ``comovi_core.training.prepare``, read by ``comovi_core.training.cache``.

A cache folder holds::

    shard_NNNNNN.safetensors   the clip folders NNNNNN*S .. NNNNNN*S+S-1 (sorted by name, S = --shard-size), less
                               the skipped ones; per clip j: "j.rgb", "j.motion_map" (C, f, h, w) normalised VAE
                               latents, "j.context" (L, D) text embedding cut to the prompt's L tokens, and, for
                               clips with motion.npz, "j.global_orient" (F, 3), "j.body_pose" (F, 69), "j.betas"
                               (10,); its metadata "comovi_cache" (JSON): config, source clip folders, clips
                               (name, caption, SMPL or not, bucket), skipped clips with their reasons
    empty_prompt.safetensors   "context": the empty prompt's embedding (for --text-dropout)
    manifest.json              config, clip count, buckets, per shard: file, clips, bucket, shapes
    report.json                the usable clip count and every skipped clip with its reasons

Every file is written atomically; a shard file that exists is complete.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..errors import CoMoViError

FORMAT = 1
MANIFEST = "manifest.json"
REPORT = "report.json"
EMPTY_PROMPT = "empty_prompt.safetensors"
CACHE_META_KEY = "comovi_cache"
LATENT_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
SMPL_KEYS = ("global_orient", "body_pose", "betas")
CACHE_FIX = (
    "delete it and run the prepare command again (python -m comovi_core.prepare, the same command: only "
    "missing shards are made)"
)


def shard_name(index: int) -> str:
    return f"shard_{index:06d}.safetensors"


def trim_context(context: torch.Tensor) -> torch.Tensor:
    """(1, text_len, D) zero-padded embedding -> (L, D) without the trailing zero rows (padding it back is exact)."""
    rows = context[0]
    nonzero = rows.abs().amax(1).nonzero()
    return rows[: int(nonzero[-1]) + 1 if len(nonzero) else 0].float().contiguous()


def pad_context(rows: torch.Tensor, text_len: int) -> torch.Tensor:
    """(L, D) -> (1, text_len, D), zero-padded as the text encoders give it."""
    return torch.cat([rows, rows.new_zeros(text_len - rows.shape[0], rows.shape[1])])[None]


def bucket_name(bucket) -> str:
    return "x".join(str(v) for v in bucket)


def read_manifest(folder: str | Path) -> dict:
    """The manifest of a finished cache, with a clear error when there is none or it is from another format."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not folder.is_dir():
        raise CoMoViError(
            f"--cache {folder} is not a folder: give the folder `python -m comovi_core.prepare --out` wrote"
        )
    if not path.is_file():
        raise CoMoViError(
            f"--cache {folder} has no {MANIFEST}: its preparation did not finish; run the same "
            "`python -m comovi_core.prepare` command again (finished shards are kept), or "
            "`python -m comovi_core.prepare --finalize --out` after all ranks are done"
        )
    manifest = json.loads(path.read_text())
    if manifest.get("format") != FORMAT:
        raise CoMoViError(
            f"{path} has cache format {manifest.get('format')}, this version reads {FORMAT}: prepare "
            "the cache again with this version"
        )
    return manifest
