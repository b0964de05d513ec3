"""Prepare a training cache: VAE latents of both videos, text embeddings and SMPL targets of every clip, in shards.

Training from the cache (``python -m comovi_core.train --cache DIR``) loads neither the VAE nor the text encoder and
streams one shard at a time, so its memory does not grow with the data set. The cached latents come from the very
code the uncached training step runs (``train_step.encode_clip``), so training on the cache equals training on the
clips. Layout of the cache: ``comovi_core.training.cache_format``; of the data set: ``comovi_core.training.data``.

Tiny CPU example (the tiny preset's random VAE and text encoder; --synthetic first writes 8 stand-in mannequin clips,
NOT SMPL, into --data):

    python -m comovi_core.prepare --preset tiny --synthetic 8 --data runs/clips --out runs/cache --shard-size 4
    python -m comovi_core.train --preset tiny --cache runs/cache --stage 1 --steps 20 --out runs/tiny

Real (the VAE and umT5 of the base folder, 81 frames at 704x1280 by default):

    python -m comovi_core.prepare --base models/Wan2.2-TI2V-5B-Diffusers --data clips/ --out cache/

A bad clip is skipped, with its reasons in the log and in ``report.json``; the run fails only when no clip at all
is usable. Each shard (--shard-size clips, in the sorted order of the clip folders) is written atomically, and
running the same command again skips the finished shards, so a killed run is continued by starting it again.
Several processes (GPUs, machines sharing the folder) prepare disjoint shards: shard k belongs to rank
k % world-size; ``torchrun --nproc_per_node N -m comovi_core.prepare ...`` or ``accelerate launch`` set --rank and
--world-size through RANK and WORLD_SIZE. The last rank to finish writes ``manifest.json`` and ``report.json``;
``--finalize`` writes them again from the shards on disk.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

import torch

from ..errors import CoMoViError, run_cli
from ..files.atomic import check_writable_folder
from ..inference.inputs import check_video_size

log = logging.getLogger("comovi_core.training.prepare")


def parse_args(argv=None) -> argparse.Namespace:
    def env(name, default):
        return int(os.environ.get(name, str(default)))  # set by torchrun / accelerate

    p = argparse.ArgumentParser(prog="python -m comovi_core.prepare", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, help="dataset folder, one sub-folder per clip (see comovi_core.training.data)")
    p.add_argument("--out", type=Path, required=True, help="cache folder to write (or to continue)")
    p.add_argument(
        "--preset",
        default="wan2.2-ti2v-5b",
        help="model preset whose VAE and text encoder encode the clips; tiny = random tiny ones in memory",
    )
    p.add_argument("--base", type=Path, help="Wan2.2-TI2V-5B diffusers folder: its vae/, text_encoder/, tokenizer/")
    p.add_argument("--vae", type=Path, help="Wan2.2 VAE (single file or folder) instead of the base folder's vae/")
    p.add_argument("--frames", type=int, help="frames per clip, 4k+1 (the first ones of each clip); default 81, tiny 9")
    p.add_argument(
        "--height",
        type=int,
        help="clip height, multiple of 32 (clips of other sizes are skipped); default 704, tiny 64",
    )
    p.add_argument("--width", type=int, help="clip width, multiple of 32; default 1280, tiny 64")
    p.add_argument(
        "--shard-size",
        type=int,
        default=16,
        help="clips per shard file (default 16: ~0.45 GB of fp32 latents at 81x704x1280)",
    )
    p.add_argument(
        "--latent-dtype",
        default="fp32",
        choices=("fp32", "bf16"),
        help="how latents are stored: fp32 (exactly what uncached training sees) or bf16 (half the disk)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="tiny preset only: seed of its random VAE and text encoder (train --preset tiny with the same --seed)",
    )
    p.add_argument("--rank", type=int, default=env("RANK", 0), help="this process's number (default $RANK or 0)")
    p.add_argument(
        "--world-size",
        type=int,
        default=env("WORLD_SIZE", 1),
        help="number of processes preparing together (default $WORLD_SIZE or 1)",
    )
    p.add_argument("--device", help="where the VAE and text encoder run; default cuda:$LOCAL_RANK if CUDA, else cpu")
    p.add_argument(
        "--synthetic",
        type=int,
        default=0,
        help="first write this many synthetic mannequin clips (stand-in body, NOT SMPL) into --data "
        "unless that folder exists: a CPU smoke test",
    )
    p.add_argument(
        "--finalize",
        action="store_true",
        help="only (re)write manifest.json and report.json from the finished shards in --out",
    )
    return p.parse_args(argv)


def cache_config(args: argparse.Namespace) -> dict:
    """What the cached tensors depend on; a cache is continued only with the same."""
    from ..model.config import get_config

    tiny = args.preset == "tiny"
    size = dict(
        frames=args.frames or (9 if tiny else 81),
        height=args.height or (64 if tiny else 704),
        width=args.width or (64 if tiny else 1280),
    )
    check_video_size(size["height"], size["width"], size["frames"])
    model = get_config(args.preset)
    if tiny:
        vae, text = f"tiny random VAE (seed {args.seed + 3})", f"tiny random umT5 (seed {args.seed})"
    elif args.base is None:
        raise CoMoViError(
            "--base is needed: the Wan2.2-TI2V-5B diffusers folder whose VAE and text encoder encode "
            "the clips (models/Wan2.2-TI2V-5B-Diffusers), or --preset tiny for a CPU smoke test"
        )
    else:
        vae, text = str((args.vae or args.base / "vae").resolve()), str((args.base / "text_encoder").resolve())
    return {
        "preset": args.preset,
        "vae": vae,
        "text_encoder": text,
        **size,
        "latent_dtype": args.latent_dtype,
        "text_len": model.text_len,
        "text_dim": model.text_dim,
    }


def _check_args(args: argparse.Namespace) -> None:
    if args.shard_size < 1:
        raise CoMoViError(f"--shard-size must be at least 1, got {args.shard_size}")
    if not 0 <= args.rank < args.world_size:
        raise CoMoViError(f"--rank must be in 0 .. --world-size - 1, got rank {args.rank} of {args.world_size}")
    if args.data is None:
        raise CoMoViError("--data is needed: the dataset folder (one sub-folder per clip), or --finalize")
    check_writable_folder(args.out, "--out cache folder")


def _plan(args: argparse.Namespace, config: dict) -> dict:
    """Which clip folders go in which shard; the same in every rank. Written to plan.json, checked against it."""
    from .cache_write import PLAN, write_json

    if not args.data.is_dir():
        raise CoMoViError(f"--data {args.data} is not a folder: give the dataset folder (one sub-folder per clip)")
    names = sorted(p.name for p in args.data.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not names:
        raise CoMoViError(
            f"--data {args.data}: no clip folders found (one sub-folder per clip, see comovi_core.training.data)"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    plan = {
        "format": 1,
        "config": config,
        "data": str(args.data.resolve()),
        "shards": [names[i : i + args.shard_size] for i in range(0, len(names), args.shard_size)],
    }
    old = json.loads((args.out / PLAN).read_text()) if (args.out / PLAN).is_file() else None
    if old is not None and old["config"] != config:
        changed = {k: (old["config"].get(k), v) for k, v in config.items() if old["config"].get(k) != v}
        raise CoMoViError(
            f"{args.out} holds a cache prepared with other settings (before -> now: {changed}): give "
            "the same settings to continue it, or another --out"
        )
    if old != plan:
        write_json(args.out / PLAN, plan)
    return plan


def _device(name: str | None) -> torch.device:
    if name:
        return torch.device(name)
    return torch.device(f"cuda:{os.environ.get('LOCAL_RANK', 0)}" if torch.cuda.is_available() else "cpu")


def run(args: argparse.Namespace) -> Path:
    from .cache_format import shard_name
    from .cache_write import build_shard, finalize, shard_meta, write_empty_prompt

    if args.finalize:
        finalize(args.out)
        return args.out
    _check_args(args)
    config = cache_config(args)
    if args.synthetic:
        _write_synthetic(args, config)
    plan = _plan(args, config)
    mine = [k for k in range(len(plan["shards"])) if k % args.world_size == args.rank]
    for stale in args.out.glob("shard_*.safetensors"):  # shards of an earlier, longer plan
        if int(stale.stem.split("_")[1]) >= len(plan["shards"]):
            stale.unlink(missing_ok=True)
    todo = []
    for k in mine:
        for debris in args.out.glob(f".{shard_name(k)}.*"):  # a killed write of this rank's shard
            debris.unlink()
        path = args.out / shard_name(k)
        meta = shard_meta(path) if path.is_file() else None
        if meta is not None and meta["config"] == config and meta["sources"] == plan["shards"][k]:
            log.info("%s is done, kept", path.name)
        else:
            todo.append(k)
    if todo:
        from ..codecs.loading import load_codecs

        device = _device(args.device)
        vae, text = load_codecs(args.preset, args.base, vae_path=args.vae, seed=args.seed, device=device)
        vae.to(device)
        write_empty_prompt(args.out, text)
        for n, k in enumerate(todo):
            tick = time.perf_counter()
            meta = build_shard(args.out, k, args.data, plan["shards"][k], config, vae, text, device)
            log.info(
                "%s (%d/%d of rank %d): %d clips, %d skipped, %.1f s",
                shard_name(k),
                n + 1,
                len(todo),
                args.rank,
                len(meta["clips"]),
                len(meta["skipped"]),
                time.perf_counter() - tick,
            )
    if all((args.out / shard_name(k)).is_file() for k in range(len(plan["shards"]))):
        finalize(args.out)
    else:
        log.info(
            "rank %d of %d is done; the last rank to finish writes manifest.json (or run --finalize)",
            args.rank,
            args.world_size,
        )
    return args.out


def _write_synthetic(args: argparse.Namespace, config: dict) -> None:
    from ..body.smpl import load_body_model
    from .data import synthetic_clips, write_clip

    if args.data.exists():
        log.info("--synthetic: %s exists, its clips are used as they are", args.data)
        return
    if args.world_size > 1:
        raise CoMoViError("--synthetic writes the clips from one process: run it once with --world-size 1")
    check_writable_folder(args.data, "--data folder (for the --synthetic clips)")
    clips = synthetic_clips(
        load_body_model(None), args.synthetic, config["frames"], config["height"], config["width"], args.seed
    )
    for i, clip in enumerate(clips):
        write_clip(args.data / f"clip_{i:04d}", clip)
    log.info("wrote %d synthetic clips (stand-in mannequin, not SMPL) to %s", len(clips), args.data)


def main(argv=None) -> int:
    return run_cli(parse_args, run, log, argv)


if __name__ == "__main__":
    sys.exit(main())
