"""Writing a training cache (layout: ``comovi_core.training.cache_format``): one shard at a time, then the manifest.

``build_shard`` decodes and encodes the clips of one shard, skipping a bad clip with its reasons instead of failing;
``finalize`` checks that every planned shard is there and writes ``report.json`` and ``manifest.json``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from ..errors import CoMoViError, TrainingDataError
from ..files.atomic import atomic_path
from ..files.weights import open_safetensors
from .cache_format import (
    CACHE_FIX,
    CACHE_META_KEY,
    EMPTY_PROMPT,
    FORMAT,
    LATENT_DTYPES,
    MANIFEST,
    REPORT,
    SMPL_KEYS,
    bucket_name,
    shard_name,
    trim_context,
)
from .data import clip_problems, load_clip
from .step import encode_clip

log = logging.getLogger("comovi_core.training.prepare")
PLAN = "plan.json"


def write_json(path: Path, value) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(value, indent=1))


def shard_meta(path: Path) -> dict:
    with open_safetensors(path, CACHE_FIX) as handle:
        return json.loads(handle.metadata()[CACHE_META_KEY])


def _encode(clip_dir: Path, config: dict, vae, text_encoder, device) -> tuple[dict, dict]:
    """(tensors without the clip's number, clip entry) of one usable clip; CoMoViError with the reason if not."""
    frames = config["frames"]
    try:
        clip = load_clip(clip_dir, frames)
    except (OSError, RuntimeError) as exc:
        raise CoMoViError(f"{clip_dir}: cannot be decoded ({exc}); re-encode it as H.264 mp4") from exc
    if len(clip.rgb) < frames or len(clip.motion_map) < frames:
        raise CoMoViError(
            f"{clip_dir}: only {min(len(clip.rgb), len(clip.motion_map))} of its frames decode, "
            f"fewer than --frames {frames}: re-encode it as H.264 mp4"
        )
    dtype = LATENT_DTYPES[config["latent_dtype"]]
    x0_rgb, x0_motion = encode_clip(vae, clip, device)
    tensors = {
        "rgb": x0_rgb[0].to("cpu", dtype).contiguous(),
        "motion_map": x0_motion[0].to("cpu", dtype).contiguous(),
        "context": trim_context(text_encoder([clip.caption]).cpu()),
    }
    if clip.motion is not None:  # the frames trained on; betas are per clip
        m = clip.motion
        arrays = {"global_orient": m.global_orient[:frames], "body_pose": m.body_pose[:frames], "betas": m.betas}
        tensors.update({k: torch.from_numpy(np.ascontiguousarray(arrays[k])) for k in SMPL_KEYS})
    entry = {
        "name": clip_dir.name,
        "caption": clip.caption,
        "smpl": clip.motion is not None,
        "bucket": [frames, config["height"], config["width"]],
    }
    return tensors, entry


def build_shard(out: Path, index: int, data: Path, sources: list[str], config: dict, vae, text_encoder, device) -> dict:
    """Write ``shard_<index>`` from the clip folders ``sources`` of ``data``; returns its metadata."""
    tensors, clips, skipped = {}, [], []
    for name in sources:
        clip_dir = data / name
        reasons = clip_problems(clip_dir, config["frames"], config["height"], config["width"])
        if not reasons:
            try:
                with torch.no_grad():
                    parts, entry = _encode(clip_dir, config, vae, text_encoder, device)
            except CoMoViError as exc:
                reasons = [str(exc)]
        if reasons:
            log.warning("skipped clip %s: %s", name, " / ".join(reasons))
            skipped.append({"clip": name, "reasons": reasons})
            continue
        tensors.update({f"{len(clips)}.{key}": value for key, value in parts.items()})
        clips.append(entry)
    meta = {
        "format": FORMAT,
        "config": config,
        "sources": sources,
        "clips": clips,
        "skipped": skipped,
        "shapes": {key: list(tensors[f"0.{key}"].shape) for key in ("rgb", "motion_map")} if clips else {},
    }
    with atomic_path(out / shard_name(index)) as tmp:
        save_file(tensors, str(tmp), metadata={CACHE_META_KEY: json.dumps(meta)})
    return meta


def write_empty_prompt(out: Path, text_encoder) -> None:
    if not (out / EMPTY_PROMPT).is_file():
        with torch.no_grad(), atomic_path(out / EMPTY_PROMPT) as tmp:
            save_file({"context": trim_context(text_encoder([""]).cpu())}, str(tmp))


def finalize(out: Path) -> dict:
    """Check that every planned shard is complete and current, then write ``report.json`` and ``manifest.json``;
    TrainingDataError when no clip at all is usable. Returns the manifest."""
    if not (out / PLAN).is_file():
        raise CoMoViError(
            f"{out}: nothing prepared there (no {PLAN}): run python -m comovi_core.prepare --data ... --out {out} first"
        )
    plan = json.loads((out / PLAN).read_text())
    missing = [k for k in range(len(plan["shards"])) if not (out / shard_name(k)).is_file()]
    if missing:
        raise CoMoViError(
            f"{out}: {len(missing)} of {len(plan['shards'])} shards are not prepared yet "
            f"({', '.join(shard_name(k) for k in missing[:5])}{', ...' if len(missing) > 5 else ''}): "
            "wait for the ranks still running, or run prepare again for them (shard k belongs to "
            "--rank k % --world-size)"
        )
    metas = [shard_meta(out / shard_name(k)) for k in range(len(plan["shards"]))]
    stale = [k for k, m in enumerate(metas) if m["config"] != plan["config"] or m["sources"] != plan["shards"][k]]
    if stale:
        raise CoMoViError(
            f"{out}: {shard_name(stale[0])} (and {len(stale) - 1} more) belong to another preparation "
            "(other settings or clips): run the prepare command again, it rebuilds them"
        )
    if not (out / EMPTY_PROMPT).is_file():
        raise CoMoViError(f"{out}: {EMPTY_PROMPT} is missing: run the prepare command again")
    skipped = [s for m in metas for s in m["skipped"]]
    usable = sum(len(m["clips"]) for m in metas)
    write_json(out / REPORT, {"usable": usable, "skipped": skipped})
    if usable == 0:
        lines = [reason for s in skipped for reason in s["reasons"]]
        raise TrainingDataError(
            f"none of the {len(skipped)} clips of {plan['data']} can be used (each reason is in "
            f"{out / REPORT}); fix or replace them:\n  " + "\n  ".join(lines[:20])
        )
    shards = [
        {
            "file": shard_name(k),
            "clips": [c["name"] for c in m["clips"]],
            "smpl": [c["smpl"] for c in m["clips"]],
            "bucket": [plan["config"][k] for k in ("frames", "height", "width")],
            "shapes": m["shapes"],
        }
        for k, m in enumerate(metas)
        if m["clips"]
    ]
    buckets: dict[str, int] = {}
    for shard in shards:
        buckets[bucket_name(shard["bucket"])] = buckets.get(bucket_name(shard["bucket"]), 0) + len(shard["clips"])
    manifest = {
        "format": FORMAT,
        "config": plan["config"],
        "data": plan["data"],
        "clips": usable,
        "skipped": len(skipped),
        "buckets": buckets,
        "shards": shards,
    }
    write_json(out / MANIFEST, manifest)
    log.info("cache %s: %d clips in %d shards, %d skipped (see %s)", out, usable, len(shards), len(skipped), REPORT)
    return manifest
