"""Look inside Wan2.2 / CoMoVi checkpoints without loading them.

    python -m comovi_core.checkpoint inspect FILE_OR_DIR [FILE_OR_DIR ...]

Prints the detected layout, the parameter count of each part of the model, the stored dtypes and
whether the 3D head is present. Only key names and shapes are read (fast, no tensor data).
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections import Counter

from ..errors import CoMoViError
from .keys import part_of
from .loading import open_checkpoint

log = logging.getLogger("comovi_core.model.inspect")


def _count(n: int) -> str:
    return f"{n / 1e9:8.3f} B" if n >= 1e8 else f"{n / 1e6:8.3f} M"


def describe(path) -> str:
    ckpt = open_checkpoint(path)
    params, dtypes = Counter(), Counter()
    for key, ref in ckpt.tensors.items():
        params[part_of(key)] += math.prod(ref.shape)
        dtypes[ref.dtype] += 1
    blocks = {k.split(".")[2] for k in ckpt.tensors if k.startswith("rgb.blocks.")}
    motion_blocks = {k.split(".")[2] for k in ckpt.tensors if k.startswith("motion.blocks.")}
    embed = ckpt.tensors.get("rgb.patch_embedding.weight") or ckpt.tensors.get("motion.patch_embedding.weight")
    lines = [f"{ckpt.path}", f"  layout      : {ckpt.format}"]
    if embed is not None:
        lines.append(
            f"  sizes       : hidden {embed.shape[0]}, latent channels {embed.shape[1]}, "
            f"{len(blocks)} RGB blocks, {len(motion_blocks)} motion blocks"
        )
    for part, n in sorted(params.items()):
        lines.append(f"  {part:<28}: {_count(n)} params")
    lines.append(f"  total       : {_count(sum(params.values())).strip()} params in {len(ckpt.tensors)} tensors")
    lines.append(f"  dtypes      : {dict(dtypes)}")
    lines.append(
        f"  3D head     : {'present' if ckpt.has_smpl_head else 'absent (the model runs without SMPL output)'}"
    )
    if ckpt.unmapped:
        lines.append(f"  unmapped    : {len(ckpt.unmapped)} tensors with no place in CoMoVi, e.g. {ckpt.unmapped[:3]}")
    return "\n".join(lines)


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    p = argparse.ArgumentParser(prog="python -m comovi_core.checkpoint", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    ins = sub.add_parser("inspect", help="print layout, parameter counts and head presence")
    ins.add_argument("paths", nargs="+", help="safetensors files or (diffusers) folders")
    args = p.parse_args(argv)
    status = 0
    for path in args.paths:
        try:
            print(describe(path))
        except CoMoViError as exc:
            log.error("%s", exc if str(path) in str(exc) else f"{path}: {exc}")
            status = 2
    return status


if __name__ == "__main__":
    sys.exit(main())
