"""Transformer weights resident on the GPU per memory mode, counted on the real-size model (meta device).

    python benchmarks/bench_memory_modes.py [--preset wan2.2-ti2v-5b]
    python benchmarks/bench_memory_modes.py --smoke   # the tiny preset (2 layer pairs)

No GPU needed: the model is built on the meta device (no memory), the modes are applied as the loader
applies them, and the bytes of the tensors that would live on the GPU are summed: bf16 weights, fp8
storage (diffusers layerwise casting; norms and embeddings stay bf16), block swap of N layer pairs (the
swapped pairs live in CPU memory; the pair that works and the next one, prefetched, are on the GPU).
Activations and the VAE come on top and must be measured on a GPU (``bench_dual_step.py``); this is the part a
memory mode controls.
"""

from __future__ import annotations

import argparse

import torch
from timing import parse_args

from comovi_core.model.config import get_config
from comovi_core.model.loading import build_model
from comovi_core.model.memory import enable_fp8_storage

GIB = 2**30
SMOKE = {"preset": "tiny", "swap": [0, 1, 2]}


def _bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="wan2.2-ti2v-5b", help="model size preset")
    p.add_argument("--swap", type=int, nargs="+", default=[0, 10, 20, 30], help="layer pairs swapped to CPU memory")
    args = parse_args(p, SMOKE)
    config = get_config(args.preset)
    rows = []
    for storage in ("bf16", "fp8"):
        model = build_model(config, "meta").to(torch.bfloat16)
        if storage == "fp8":
            enable_fp8_storage(model, torch.bfloat16)
        total = _bytes([*model.parameters(), *model.buffers()])
        pairs = [
            _bytes([q for m in model.pair_modules(j) for q in m.parameters()]) for j in range(config.num_motion_blocks)
        ]
        for n in args.swap:
            if n > config.num_motion_blocks:
                continue
            swapped = sum(pairs[config.num_motion_blocks - n :])
            # plus the pair visiting the GPU and the next one prefetched (group offload with streams on CUDA)
            resident = total - swapped + (min(n, 2) * max(pairs) if n else 0)
            rows.append((storage, n, resident / GIB, swapped / GIB))
    print(f"{'weights':>7} {'swap':>5} {'on GPU (GiB)':>13} {'in CPU RAM (GiB)':>17}")
    for storage, n, gpu, cpu in rows:
        print(f"{storage:>7} {n:>5} {gpu:>13.2f} {cpu:>17.2f}")
    full = rows[0][2]
    best = min(r[2] for r in rows)
    print(
        f"fp8 / bf16 resident = {next(r[2] for r in rows if r[0] == 'fp8' and r[1] == 0) / full:.2f}; "
        f"smallest mode / bf16 = {best / full:.2f}; model offload keeps 0 GiB between runs"
    )


if __name__ == "__main__":
    main()
