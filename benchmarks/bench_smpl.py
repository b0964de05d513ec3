"""SMPL forward time for a whole clip (target: 81 frames in <= 0.1 s on a 2-core CPU).

    python benchmarks/bench_smpl.py [--frames 81] [--body-model models/smpl] [--repeats 20]

Prints the median and best time of ``BodyModel`` (smplx's SMPL on safely loaded arrays) for a
whole clip in one batched call.
"""

from __future__ import annotations

import argparse
import statistics

import torch
from timing import timed

from comovi_core.body.smpl import load_body_model

TARGET_S = 0.1


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=81, help="frames per forward call")
    p.add_argument("--body-model", default=None, help="SMPL file or folder; default: the stand-in mannequin (same sizes as SMPL)")
    p.add_argument("--repeats", type=int, default=20, help="timed repetitions")
    p.add_argument("--device", default="cpu", help="torch device")
    args = p.parse_args()
    model = load_body_model(args.body_model, device=args.device)
    g = torch.Generator().manual_seed(0)
    go = torch.randn(args.frames, 3, generator=g).to(args.device)
    bp = (0.3 * torch.randn(args.frames, 69, generator=g)).to(args.device)
    betas = torch.randn(10, generator=g).to(args.device)
    transl = torch.tensor([0.0, 0.0, 4.0]).expand(args.frames, 3).to(args.device)
    with torch.inference_mode():
        ours = timed(lambda: model(go, bp, betas, transl), args.repeats)
    med = statistics.median(ours)
    print(f"SMPL forward, {args.frames} frames, {torch.get_num_threads()} threads, {args.device}")
    print(f"  comovi BodyModel : median {med * 1e3:7.1f} ms   best {min(ours) * 1e3:7.1f} ms")
    print(f"  target <= {TARGET_S:.2f} s: {'PASS' if med <= TARGET_S else 'FAIL'}")


if __name__ == "__main__":
    main()
