"""Join a training state into one weights file: ``python -m comovi_core.consolidate RUN/state_N --out FILE``.

A state folder (``training.state``) holds the fp32 master weights of the trained parameters, as one file or, after a
sharded run (--sharding fsdp2), as one shard file per process. This writes them as one safetensors file in our
layout (with the model config), which ``load_model`` stacks on the base weights like any CoMoVi file:

    python -m comovi_core.consolidate runs/s2/state_004000 --out runs/s2/s2_fp32.safetensors

and then ``load_model(None, ["models/Wan2.2-TI2V-5B-Diffusers", "runs/s2/s2_fp32.safetensors"])``, ``train --init
BASE FILE``, or the file as ``comovi`` in ComfyUI's Load CoMoVi.

The run's ``step_N.safetensors`` is already the whole model in the training compute dtype (bf16); this is the
trained part at full precision, e.g. to average, merge or fine-tune again. Memory: the
trained tensors once (~24 GB for stage 2 at real size), read one tensor at a time from the shards.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import torch

from ..errors import CoMoViError, run_cli
from ..files.atomic import check_writable_file

log = logging.getLogger("comovi_core.training.consolidate")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def consolidate(state_dir: str | Path, out: str | Path, dtype: torch.dtype = torch.float32) -> Path:
    """Write the trained parameters of ``state_dir`` as one file at ``out`` (atomic); returns ``out``."""
    from ..model.config import get_config
    from ..model.saving import write_comovi_file
    from .state import StateTensors

    state_dir, out = Path(state_dir), Path(out)
    if not (state_dir / "state.json").is_file():
        raise CoMoViError(
            f"{state_dir} is not a training state (a state_NNNNNN folder with state.json, in a run's --out folder)"
        )
    check_writable_file(out, "--out")
    info = json.loads((state_dir / "state.json").read_text())
    train = info["train"]
    if train.get("lora"):
        step_file = state_dir.parent / f"step_{info['step']:06d}.safetensors"
        raise CoMoViError(
            f"{state_dir} is a LoRA run's state: its checkpoint {step_file} already holds the adapters (fp32); use "
            "that file (generate --lora, Load CoMoVi LoRA)"
        )
    masters = StateTensors(state_dir, "trainable")
    tensors = {}
    for name in info["names"]:
        value = masters[name]
        if list(value.shape) != info.get("shapes", {}).get(name, list(value.shape)):
            raise CoMoViError(
                f"{state_dir}: {name} joins to {tuple(value.shape)}, state.json says {tuple(info['shapes'][name])}: "
                "a shard file is from another save; use another state"
            )
        tensors[name] = value.to(dtype).contiguous()
    step_meta = state_dir.parent / f"step_{info['step']:06d}.json"
    config = (
        json.loads(step_meta.read_text())["config"] if step_meta.is_file() else get_config(train["preset"]).to_dict()
    )
    meta = {"config": config, "step": info["step"], "train": train, "consolidated_from": state_dir.name}
    write_comovi_file(out, tensors, meta)
    log.info(
        "wrote %s: %d trained tensors (%.2fB parameters, %s) of step %d from %d shard file(s)",
        out,
        len(tensors),
        sum(t.numel() for t in tensors.values()) / 1e9,
        str(dtype).removeprefix("torch."),
        info["step"],
        len(masters.handles),
    )
    return out


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m comovi_core.consolidate", description=__doc__.split("\n\n")[0])
    p.add_argument("state", type=Path, help="a state_NNNNNN folder of a training run")
    p.add_argument("--out", type=Path, required=True, help="the safetensors file to write (+ its .json)")
    p.add_argument("--dtype", choices=tuple(DTYPES), default="fp32", help="dtype of the written weights")
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> Path:
    return consolidate(args.state, args.out, DTYPES[args.dtype])


def main(argv=None) -> int:
    return run_cli(parse_args, run, log, argv)


if __name__ == "__main__":
    sys.exit(main())
