"""Block swap: our former swapper vs diffusers' group offload, per forward of the dual model.

    python benchmarks/bench_block_swap.py [--preset medium] [--pairs 2] [--device cpu] [--repeats 7] [--smoke]

Cases, interleaved within each repeat (``timing.py``): ``plain`` (no offload), ``swapper`` (the removed
``BlockSwap``, reproduced here as forward hooks: each pair ``.to(device)`` before its layer and ``.to(cpu)``
after), ``pairs`` (``--block-swap`` now: ``memory.enable_pair_offload``, one diffusers ``ModuleGroup`` per
layer pair; streams + prefetch on CUDA) and ``diffusers`` (stock ``enable_group_offload``, block level, with
``block_modules=["rgb", "motion"]``; only on CPU: on a GPU it leaves each branch's embeddings
and head off the device because the dual model never calls a branch's ``forward``).

On CPU the onload and offload devices are the same, so what is measured is the cost of the machinery
(hooks, bookkeeping) per forward, plus counted traffic: tensors the mode would copy host->device and
device->host per forward, and the most pair bytes on the device at once. Transfer time needs a GPU
(``--device cuda``: CUDA events).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from timing import (
    add_timing_args,
    check_repeats,
    clock_for,
    interleaved,
    parse_args,
    print_case,
    print_ratio,
    ratios,
    set_threads,
)

from comovi_core.model.config import get_config
from comovi_core.model.loading import build_model
from comovi_core.model.memory import enable_pair_offload


class Traffic:
    """Bytes moved per forward and the most pair bytes resident at once, counted at each move."""

    def __init__(self):
        self.h2d = self.d2h = self.resident = self.peak = 0

    def onload(self, nbytes: int) -> None:
        self.h2d += nbytes
        self.resident += nbytes
        self.peak = max(self.peak, self.resident)

    def offload(self, nbytes: int, copies: bool) -> None:
        self.d2h += nbytes if copies else 0
        self.resident -= nbytes


def _pair_bytes(model, j: int) -> int:
    return sum(p.numel() * p.element_size() for m in model.pair_modules(j) for p in m.parameters())


def former_swapper(model, num_pairs: int, device, traffic: Traffic) -> None:
    """The removed ``memory.BlockSwap``, as hooks: pair in with ``.to(device)``, out with ``.to("cpu")``."""
    total = model.comovi_config.num_motion_blocks
    for j in range(total - num_pairs, total):
        modules, nbytes = model.pair_modules(j), _pair_bytes(model, j)

        def move_in(*_, modules=modules, nbytes=nbytes):
            for m in modules:
                m.to(device, non_blocking=True)
            traffic.onload(nbytes)

        def move_out(*_, modules=modules, nbytes=nbytes):
            for m in modules:
                m.to("cpu", non_blocking=True)
            traffic.offload(nbytes, copies=True)  # .to("cpu") copies device -> host every time

        modules[0].register_forward_pre_hook(move_in)
        modules[-1].register_forward_hook(move_out)


def _count_groups(groups, traffic: Traffic, model) -> None:
    for group in groups:
        nbytes = sum(p.numel() * p.element_size() for m in group.modules for p in m.parameters())
        onload, offload = group.onload_, group.offload_
        group.onload_ = lambda onload=onload, nbytes=nbytes: (traffic.onload(nbytes), onload())[1]
        # with a stream the way back is a pointer swap to the pinned host copy; without, a device -> host copy
        group.offload_ = lambda offload=offload, nbytes=nbytes, g=group: (
            traffic.offload(nbytes, copies=g.stream is None),
            offload(),
        )[1]


SMOKE = {"preset": "tiny", "pairs": 1, "size": 4, "frames": 1}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="medium", help="model size preset (comovi_core.model.config.PRESETS)")
    p.add_argument("--pairs", type=int, default=2, help="layer pairs offloaded")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--size", type=int, default=16, help="latent height = width")
    p.add_argument("--frames", type=int, default=3, help="latent frames")
    add_timing_args(p)
    args = parse_args(p, SMOKE)
    check_repeats(args.repeats)
    set_threads(args.threads)
    cfg = get_config(args.preset, smpl_layers=0)
    device = torch.device(args.device)
    g = torch.Generator().manual_seed(0)
    lat = torch.randn(1, cfg.in_channels, args.frames, args.size, args.size, generator=g).to(device)
    tokens = args.frames * (args.size // 2) ** 2
    inputs = (
        lat,
        lat * 0.5,
        torch.full((1, tokens), 500.0, device=device),
        torch.randn(1, cfg.text_len, cfg.text_dim, generator=g).to(device),
    )

    def model_with(mode: str):
        torch.manual_seed(0)
        model = build_model(cfg, "cpu").eval()
        with torch.no_grad():
            for q in model.parameters():
                q.copy_(torch.randn_like(q) * 0.02)
        traffic = Traffic()
        if mode == "plain":
            model.to(device)
        elif mode == "swapper":
            total = cfg.num_motion_blocks
            swapped = {
                id(q) for j in range(total - args.pairs, total) for m in model.pair_modules(j) for q in m.parameters()
            }
            for q in model.parameters():
                if id(q) not in swapped:
                    q.data = q.data.to(device)
            for b in model.buffers():
                b.data = b.data.to(device)
            former_swapper(model, args.pairs, device, traffic)
        elif mode == "pairs":
            _count_groups(enable_pair_offload(model, args.pairs, device).groups, traffic, model)
        else:
            model.enable_group_offload(
                onload_device=device,
                offload_type="block_level",
                num_blocks_per_group=1,
                block_modules=["rgb", "motion"],
            )
        return model, traffic

    modes = ["plain", "swapper", "pairs"] + (["diffusers"] if device.type == "cpu" else [])
    built = {m: model_with(m) for m in modes}
    outputs = {}
    for mode, (model, traffic) in built.items():
        with torch.no_grad():
            outputs[mode] = model(*inputs).rgb.float().cpu()
        traffic.h2d = traffic.d2h = 0  # count one forward after the first
        with torch.no_grad():
            model(*inputs)
        built[mode] = (model, traffic, (traffic.h2d, traffic.d2h, traffic.peak))

    def runner(model):
        def run():
            with torch.no_grad():
                model(*inputs)

        return run

    samples = interleaved({m: runner(built[m][0]) for m in modes}, args.repeats, args.warmup, clock_for(args.device))
    mib = 2**20
    print(
        f"preset {args.preset}, {cfg.num_motion_blocks} layer pairs ({_pair_bytes(built['plain'][0], 0) / mib:.1f} "
        f"MiB each), {args.pairs} offloaded, {tokens} tokens per branch, {args.threads} thread(s), {args.device}"
    )
    for mode in modes:
        h2d, d2h, peak = built[mode][2]
        same = torch.equal(outputs[mode], outputs["plain"])
        print_case(mode, samples[mode])
        print(
            f"    per forward: host->device {h2d / mib:.1f} MiB, device->host {d2h / mib:.1f} MiB, "
            f"pairs on device at once {peak / mib:.1f} MiB; output identical to plain: {same}"
        )
    print_ratio("pairs/swapper", ratios(samples["pairs"], samples["swapper"]), 1.05)  # equal within 5 %
    print_ratio("pairs/plain", ratios(samples["pairs"], samples["plain"]))
    if "diffusers" in samples:
        print_ratio("diffusers/swapper", ratios(samples["diffusers"], samples["swapper"]), 1.0)


if __name__ == "__main__":
    main()
