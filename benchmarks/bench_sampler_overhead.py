"""Per-step cost of the joint sampler outside the transformer, and peak host RAM.

    python benchmarks/bench_sampler_overhead.py [--preset medium] [--steps 6] [--frames 21 --size 16]

Runs ``comovi_core.sampling.sample`` (UniPC, CFG on: both branches, batch 2) and times the
transformer's forward calls with hooks; everything else in the loop (input composition, per-token
timesteps, CFG mix, the joint scheduler step) is overhead. Target: overhead <= 3% of the loop.
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from comovi_core.model.config import get_config
from comovi_core.model.loading import build_model
from comovi_core.sampling import sample

TARGET = 0.03


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="medium", help="model preset")
    p.add_argument("--steps", type=int, default=6, help="denoising steps")
    p.add_argument("--frames", type=int, default=21, help="latent frames")
    p.add_argument("--size", type=int, default=16, help="latent height and width")
    p.add_argument("--solver", default="unipc", choices=("unipc", "euler"), help="flow-matching solver")
    args = p.parse_args()
    cfg = get_config(args.preset)
    torch.manual_seed(0)
    model = build_model(cfg, "cpu").eval()
    inside = []
    model.register_forward_pre_hook(lambda m, a: inside.append(-time.perf_counter()))
    model.register_forward_hook(lambda m, a, o: inside.__setitem__(-1, inside[-1] + time.perf_counter()))
    cond = torch.randn(1, cfg.in_channels, 1, args.size, args.size)
    emb, neg = torch.randn(1, cfg.text_len, cfg.text_dim), torch.randn(1, cfg.text_len, cfg.text_dim)
    pose = torch.randn(1, 144) if cfg.has_smpl_head else None
    with torch.inference_mode():
        sample(model, cond, cond, args.frames, emb, neg, pose, steps=1, solver=args.solver)  # warm-up
        inside.clear()
        start = time.perf_counter()
        sample(model, cond, cond, args.frames, emb, neg, pose, steps=args.steps, solver=args.solver,
               generator=torch.Generator().manual_seed(0))
        total = time.perf_counter() - start
    forward = sum(inside)
    overhead = (total - forward) / total
    print(f"preset {args.preset}, {args.frames}x{args.size}x{args.size} latents, {args.steps} {args.solver} steps with CFG")
    print(f"  loop total     : {total:.3f} s ({total / args.steps * 1e3:.1f} ms/step)")
    print(f"  transformer    : {forward:.3f} s")
    print(f"  outside it     : {(total - forward) / args.steps * 1e3:.2f} ms/step = {overhead:.2%}  (target <= {TARGET:.0%}: "
          f"{'PASS' if overhead <= TARGET else 'FAIL'})")
    print(f"  peak host RAM  : {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
