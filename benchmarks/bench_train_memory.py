"""Per-GPU memory of fine-tuning at real size, by sharding strategy, counted on the meta device (no weights, no GPU).

    python benchmarks/bench_train_memory.py [--gpus 8] [--height 704 --width 1280 --frames 81] [--lora-rank 64]
    python benchmarks/bench_train_memory.py --smoke   # the tiny preset at 64x64x5 on 2 GPUs, rank 4

Builds the dual model of the preset on the meta device, marks what each stage trains (``trainable_parameters``,
as ``train`` does) and adds up, per GPU, bytes of weights, gradients and optimizer state for each strategy, with
the precision scheme of ``comovi_core.training.train`` (trained parameters fp32 masters + two fp32 AdamW moments, frozen
ones bf16; train's DeepSpeed path keeps bf16 working copies and fp32 masters in the optimizer):

    ddp        every GPU: frozen bf16 + trained fp32 + fp32 grads + AdamW            2F + 16T
    ddp_8bit   ddp with --optimizer adamw8bit (two 8-bit moments + block scales)    2F + 10T
    zero2      train --sharding zero2: bf16 weights on every GPU; grads, masters, moments /N   2P + 14T/N
    zero2_cpu  train --sharding zero2_offload: zero2, grads and optimizer in host RAM          2P
    zero3      train --sharding zero3: everything /N, plus the gathered running layer          (2P + 14T)/N + G
    zero3_cpu  train --sharding zero3_offload: weights, grads, optimizer in host RAM           G  (host: (2P + 14T)/N)
    fsdp2      train --sharding fsdp2: everything /N, bf16 copy of the running layer   (2F + 16T)/N + G
    fsdp2_cpu  train --sharding fsdp2_offload: shards, grads, AdamW in host RAM         G  (host: (2F + 16T)/N)
    lora       one GPU: all weights frozen bf16, rank-r adapters (fp32, AdamW) on the layers train --lora adapts

P, T, F: all, trained, frozen parameters; G: one dual layer (RGB + motion block, coupling) gathered in bf16, twice
(prefetch). Activations are NOT measured here (no GPU): the table adds the lower bound that per-block gradient
checkpointing keeps, each layer's input of both branches in bf16; the recompute peak of one layer comes on top,
so "fits" (states + that lower bound within --budget) is a necessary condition, not a sufficient one.
"""

from __future__ import annotations

import argparse

from timing import parse_args

GIB = 2**30
SMOKE = {"preset": "tiny", "gpus": 2, "height": 64, "width": 64, "frames": 5, "lora_rank": 4}


def count(params) -> int:
    return sum(p.numel() for p in params)


def lora_params(model, stage: int, rank: int) -> int:
    """Parameters of rank-``rank`` adapters (A: r x in, B: out x r) on the Linear layers ``train --lora`` adapts by
    default in ``stage`` (``comovi_core.model.lora.DEFAULT_TARGETS``)."""
    from comovi_core.model.lora import DEFAULT_TARGETS, target_modules

    layers = [model.get_submodule(n) for n in target_modules(model, DEFAULT_TARGETS[stage])]
    return sum(rank * (m.in_features + m.out_features) for m in layers)


def per_gpu(p: int, t: int, gathered: int, n: int, lora: int) -> dict[str, tuple[float, float, float]]:
    """strategy -> (weights, grads, optimizer) in bytes per GPU."""
    f = p - t
    return {
        "ddp": (2 * f + 4 * t, 4 * t, 8 * t),
        "ddp_8bit": (2 * f + 4 * t, 4 * t, 2 * t + 2 * 4 * t / 256),  # bitsandbytes: fp32 absmax per 256 values
        "zero2": (2 * p, 2 * t / n, 12 * t / n),
        "zero2_cpu": (2 * p, 0.0, 0.0),
        "zero3": (2 * p / n + gathered, 2 * t / n, 12 * t / n),
        "zero3_cpu": (gathered, 0.0, 0.0),
        "fsdp2": ((2 * f + 4 * t) / n + gathered, 4 * t / n, 8 * t / n),
        "fsdp2_cpu": (gathered, 0.0, 0.0),
        "lora": (2 * p + 4 * lora, 4 * lora, 8 * lora),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="wan2.2-ti2v-5b", help="model preset")
    p.add_argument("--gpus", type=int, default=8, help="GPUs the sharded strategies divide by (N)")
    p.add_argument("--height", type=int, default=704, help="training height")
    p.add_argument("--width", type=int, default=1280, help="training width")
    p.add_argument("--frames", type=int, default=81, help="frames per clip (4k+1)")
    p.add_argument("--lora-rank", type=int, default=64, help="LoRA rank")
    p.add_argument("--budget", type=float, default=80.0, help="GPU memory to compare against, GiB")
    args = parse_args(p, SMOKE)
    from comovi_core.model.config import get_config
    from comovi_core.model.loading import build_model
    from comovi_core.training.step import trainable_parameters

    cfg = get_config(args.preset)
    model = build_model(cfg, "meta")
    total = count(model.parameters())
    layer = (
        count(model.rgb.blocks[0].parameters())
        + count(model.motion.blocks[0].parameters())
        + (count(model.zero_linears[0].parameters()) if len(model.zero_linears) else 0)
    )
    gathered = 2 * 2 * layer  # bf16, current + prefetched layer
    tokens = ((args.frames - 1) // 4 + 1) * (args.height // 32) * (args.width // 32)
    boundaries = 2 * tokens * cfg.hidden_size * 2 * cfg.num_layers  # both branches, bf16, one input per layer
    print(
        f"{args.preset}: {total / 1e9:.2f}B parameters; {args.height}x{args.width}x{args.frames} -> {tokens} tokens "
        f"per branch; activations at checkpoint boundaries >= {boundaries / GIB:.1f} GiB per GPU (batch 1)"
    )
    print(
        f"{'stage':>5} {'strategy':>10} {'trained':>8} {'weights':>8} {'grads':>7} {'optim':>7} {'states':>7} "
        f"{'+act>=':>7}  fits {args.budget:.0f} GiB?   (GiB per GPU; N = {args.gpus} except lora: 1)"
    )
    for stage in (1, 2):
        trained = trainable_parameters(model, stage)
        t = count(trained)
        lora = lora_params(model, stage, args.lora_rank)
        for name, parts in per_gpu(total, t, gathered, args.gpus, lora).items():
            states = sum(parts)
            shown_t = lora if name == "lora" else t
            fits = "yes" if states + boundaries <= args.budget * GIB else "no"
            print(
                f"{stage:>5} {name:>10} {shown_t / 1e9:>7.2f}B "
                + " ".join(f"{v / GIB:>7.1f}" for v in parts)
                + f" {states / GIB:>7.1f} {(states + boundaries) / GIB:>7.1f}  {fits}"
            )


if __name__ == "__main__":
    main()
