"""Per-step cost of the joint sampler outside the transformer, and peak host RAM.

    python benchmarks/bench_sampler_overhead.py [--preset medium] [--steps 6] [--frames 21 --size 16] [--repeats 7]
        [--smoke]

Runs ``comovi_core.inference.sampling.sample`` (UniPC, CFG on: both branches, batch 2) ``--repeats`` times after a
warm-up and times the transformer's forward calls with hooks, in CPU time at fixed torch threads (CUDA
events on a GPU); everything else in the loop (input composition, per-token timesteps, CFG mix, the joint
scheduler step) is overhead. Per repeat: overhead / loop total; the verdict is on its median.
Target: overhead <= 3% of the loop.
"""

from __future__ import annotations

import argparse
import resource

import torch
from timing import add_timing_args, check_repeats, clock_for, describe, parse_args, print_ratio, set_threads

from comovi_core.inference.sampling import sample
from comovi_core.model.config import get_config
from comovi_core.model.loading import build_model

TARGET = 0.03
SMOKE = {"preset": "tiny", "steps": 2, "frames": 2, "size": 4}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="medium", help="model preset")
    p.add_argument("--steps", type=int, default=6, help="denoising steps")
    p.add_argument("--frames", type=int, default=21, help="latent frames")
    p.add_argument("--size", type=int, default=16, help="latent height and width")
    p.add_argument("--solver", default="unipc", choices=("unipc", "euler"), help="flow-matching solver")
    p.add_argument("--device", default="cpu", help="torch device")
    add_timing_args(p)
    args = parse_args(p, SMOKE)
    check_repeats(args.repeats)
    set_threads(args.threads)
    cfg = get_config(args.preset)
    torch.manual_seed(0)
    model = build_model(cfg, "cpu").to(args.device).eval()
    clock = clock_for(args.device)
    marks = []  # (start, stop) of every transformer forward
    model.register_forward_pre_hook(lambda m, a: marks.append([clock.mark()]))
    model.register_forward_hook(lambda m, a, o: marks[-1].append(clock.mark()))
    cond = torch.randn(1, cfg.in_channels, 1, args.size, args.size, device=args.device)
    emb = torch.randn(1, cfg.text_len, cfg.text_dim, device=args.device)
    neg = torch.randn(1, cfg.text_len, cfg.text_dim, device=args.device)
    pose = torch.randn(1, 144, device=args.device) if cfg.has_smpl_head else None

    def run(steps: int) -> None:
        sample(
            model,
            cond,
            cond,
            args.frames,
            emb,
            negative_prompt_embeds=neg,
            start_pose_6d=pose,
            steps=steps,
            solver=args.solver,
            generator=torch.Generator(args.device).manual_seed(0),
        )

    totals, forwards = [], []
    with torch.inference_mode():
        for _ in range(args.warmup):
            run(1)
        for _ in range(args.repeats):
            marks.clear()
            totals.append(clock.time(lambda: run(args.steps)))
            forwards.append(sum(clock.elapsed(a, b) for a, b in marks))
    outside = [t - f for t, f in zip(totals, forwards)]
    print(
        f"preset {args.preset}, {args.frames}x{args.size}x{args.size} latents, {args.steps} {args.solver} steps with "
        f"CFG, {args.device}, {torch.get_num_threads()} threads, {clock.kind}, {args.repeats} repeats"
    )

    def per_step(xs):
        return [x / args.steps for x in xs]

    print(f"  loop per step : {describe(per_step(totals))}")
    print(f"  transformer   : {describe(per_step(forwards))}")
    print(f"  outside it    : {describe(per_step(outside), digits=2)}")
    print_ratio("outside/total", [o / t for o, t in zip(outside, totals)], TARGET)
    print(f"  peak host RAM : {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
