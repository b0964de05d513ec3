"""SMPL forward time for a whole clip (target: 81 frames in <= 0.1 s of CPU time at 1 thread).

    python benchmarks/bench_smpl.py [--frames 81] [--body-model models/smpl] [--threads 1] [--repeats 20] [--smoke]

Times ``BodyModel`` (smplx's SMPL on safely loaded arrays) for a whole clip in one batched call, after a
warm-up, in CPU time at fixed torch threads (CUDA events on a GPU); prints the median and spread, and the
verdict on the median.
"""

from __future__ import annotations

import argparse

import torch
from timing import add_timing_args, clock_for, interleaved, parse_args, print_case, set_threads, verdict

from comovi_core.body.smpl import load_body_model

TARGET_S = 0.1
SMOKE = {"frames": 4, "repeats": 7}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=81, help="frames per forward call")
    p.add_argument(
        "--body-model", default=None, help="SMPL file or folder; default: the stand-in mannequin (SMPL's sizes)"
    )
    p.add_argument("--device", default="cpu", help="torch device")
    add_timing_args(p, repeats=20)
    args = parse_args(p, SMOKE)
    set_threads(args.threads)
    model = load_body_model(args.body_model, device=args.device)
    g = torch.Generator().manual_seed(0)
    go = torch.randn(args.frames, 3, generator=g).to(args.device)
    bp = (0.3 * torch.randn(args.frames, 69, generator=g)).to(args.device)
    betas = torch.randn(10, generator=g).to(args.device)
    transl = torch.tensor([0.0, 0.0, 4.0]).expand(args.frames, 3).to(args.device)
    clock = clock_for(args.device)
    with torch.inference_mode():
        seconds = interleaved({"BodyModel": lambda: model(go, bp, betas, transl)}, args.repeats, args.warmup, clock)
    print(f"SMPL forward, {args.frames} frames, {args.device}, {torch.get_num_threads()} threads, {clock.kind}")
    print_case("BodyModel", seconds["BodyModel"])
    print(f"  verdict       : {verdict(seconds['BodyModel'], TARGET_S, 's')}")


if __name__ == "__main__":
    main()
