"""Step time of the dual-branch model vs one diffusers Wan branch, measured in the same run.

    python benchmarks/bench_dual_step.py [--preset medium] [--frames 21 --size 16] [--threads 1] [--repeats 7]
        [--release PATH_TO_A_COMOVI_CHECKOUT] [--smoke]

Default: the issue's medium config (dim 384, 4 heads, FFN 1024, 4 layers) on 21x16x16 latents
(1,344 tokens per branch), CPU, fp32, no head, 1 torch thread. Each repeat times one dual step and one
single-branch step back to back (order alternating), in CPU time (CUDA events on a GPU); the verdict is
on the median of the per-repeat ratio dual / single. Target: <= 2.05 (the release measures 2.13 on this
setup; two full branches make 2.0 the floor unless work is shared, as the embeddings are).
"""

from __future__ import annotations

import argparse

import torch
from diffusers import WanTransformer3DModel
from timing import add_timing_args, clock_for, interleaved, parse_args, print_case, print_ratio, ratios, set_threads

from comovi_core.model.config import get_config
from comovi_core.model.loading import build_model

TARGET = 2.05
RELEASE_TARGET = 1.0  # issue: ours no slower than the release at 1,344 and 5,376 tokens
SMOKE = {"preset": "tiny", "frames": 2, "size": 4}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="medium", help="model preset (comovi_core.model.config.PRESETS)")
    p.add_argument("--frames", type=int, default=21, help="latent frames")
    p.add_argument("--size", type=int, default=16, help="latent height and width")
    p.add_argument("--device", default="cpu", help="torch device")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"), help="weights and activations")
    p.add_argument(
        "--release",
        help="a checkout of IGL-HKUST/CoMoVi (the folder holding comovi/): also time the release's dual model and "
        "print ours/release",
    )
    add_timing_args(p)
    args = parse_args(p, SMOKE)
    set_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    cfg = get_config(args.preset, smpl_layers=0)
    torch.manual_seed(0)
    dual = build_model(cfg, "cpu").to(args.device, dtype).eval()
    single = WanTransformer3DModel(**cfg.wan_kwargs()).to(args.device, dtype).eval()
    single.load_state_dict(dual.rgb.state_dict())
    g = torch.Generator().manual_seed(0)
    lat = torch.randn(1, cfg.in_channels, args.frames, args.size, args.size, generator=g).to(args.device, dtype)
    tokens = args.frames * (args.size // 2) ** 2
    t = torch.full((1, tokens), 500.0, device=args.device)
    ctx = torch.randn(1, cfg.text_len, cfg.text_dim, generator=g).to(args.device, dtype)
    clock = clock_for(args.device)
    with torch.inference_mode():
        cases = {
            "dual step": lambda: dual(lat, lat, t, ctx),
            "single Wan": lambda: single(lat, t, ctx, return_dict=False),
        }
        if args.release:
            from release_model import release_model, release_step

            release = release_model(args.release, cfg, args.device, dtype)
            cases["release dual"] = lambda: release_step(release, lat, t, ctx)
        s = interleaved(cases, args.repeats, args.warmup, clock)
    print(
        f"preset {args.preset}: dim {cfg.hidden_size}, {cfg.num_layers} layers, latents {args.frames}x{args.size}x"
        f"{args.size} ({tokens} tokens/branch), {args.device}, {args.dtype}, {torch.get_num_threads()} threads, "
        f"{clock.kind}, {args.warmup} warm-up + {args.repeats} interleaved repeats"
    )
    print_case("dual step", s["dual step"])
    print_case("single Wan", s["single Wan"])
    print_ratio("dual/single", ratios(s["dual step"], s["single Wan"]), TARGET)
    if args.release:
        print_case("release dual", s["release dual"])
        print_ratio("release/single", ratios(s["release dual"], s["single Wan"]), None)
        print_ratio("ours/release", ratios(s["dual step"], s["release dual"]), RELEASE_TARGET)


if __name__ == "__main__":
    main()
