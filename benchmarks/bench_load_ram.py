"""Peak host RAM while loading a checkpoint, relative to the size of the weights (target: near 1x).

    python benchmarks/bench_load_ram.py [--preset medium] [--layers 12]
    python benchmarks/bench_load_ram.py --smoke   # seconds on a CPU: 2 layers, FFN 512 (33 MiB of weights)

Saves a model of the preset (bf16) in the release's CoMoVi layout to a temporary folder, then, in a
fresh child process, loads it with ``load_model`` and reports the peak resident memory above the
process's baseline (interpreter + libraries; Linux /proc peak-RSS reset) divided by the bytes of the weights.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from timing import parse_args

SMOKE = {"layers": 2, "ffn": 512}
CHILD = r"""
import json, sys, torch
from comovi_core.model.config import CoMoViConfig
from comovi_core.model.loading import load_model
cfg = CoMoViConfig.from_dict(json.loads(sys.argv[2]))
def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1])
open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM) to the current RSS
base = status("VmRSS:")
model, _ = load_model(cfg, sys.argv[1], dtype=torch.bfloat16)
peak = status("VmHWM:")
for p in model.parameters():  # touch every page, as a forward pass would
    p.detach().view(-1)[:: 1024].float().sum()
touched = status("VmHWM:")
weights = sum(p.numel() * p.element_size() for p in model.parameters())
print(json.dumps({"base_kib": base, "peak_kib": peak, "touched_kib": touched, "weights_bytes": weights}))
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="medium", help="model preset")
    p.add_argument("--layers", type=int, default=24, help="layers (more layers = more weights to load)")
    p.add_argument("--ffn", type=int, default=8192, help="feed-forward size")
    args = parse_args(p, SMOKE)
    from comovi_core.model.config import get_config
    from comovi_core.model.loading import build_model
    from comovi_core.model.saving import save_checkpoint

    cfg = get_config(args.preset, num_layers=args.layers, ffn_dim=args.ffn, smpl_layers=2, smpl_heads=4)
    model = build_model(cfg, "cpu").to(torch.bfloat16)
    with tempfile.TemporaryDirectory() as tmp:
        path = save_checkpoint(model, Path(tmp) / "m.safetensors", "comovi_release")
        del model
        # the child only imports and loads (after warming imports so the baseline includes the libraries)
        code = "import comovi_core.model.loading, diffusers, accelerate\n" + CHILD
        out = subprocess.run(
            [sys.executable, "-c", code, str(path), json.dumps(cfg.to_dict())],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    r = json.loads(out.strip().splitlines()[-1])
    extra = (r["peak_kib"] - r["base_kib"]) * 1024
    print(
        f"weights: {r['weights_bytes'] / 2**20:.0f} MiB (bf16, {cfg.num_layers} layers x 2 branches, dim "
        f"{cfg.hidden_size})"
    )
    print(
        f"peak RSS above baseline during load: {extra / 2**20:.0f} MiB = {extra / r['weights_bytes']:.2f}x the weights "
        f"(baseline {r['base_kib'] / 1024:.0f} MiB)"
    )
    touched = (r["touched_kib"] - r["base_kib"]) * 1024
    print(
        f"after touching every weight (as inference does): {touched / 2**20:.0f} MiB = "
        f"{touched / r['weights_bytes']:.2f}x "
        "(target: near 1x, i.e. one copy)"
    )


if __name__ == "__main__":
    main()
