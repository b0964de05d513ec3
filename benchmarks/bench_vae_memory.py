"""Working memory of the real-size Wan2.2 VAE decode, tiled vs untiled, at two resolutions (CPU, random weights).

    python benchmarks/bench_vae_memory.py [--sizes 176x320 352x640] [--latent-frames 2]
    python benchmarks/bench_vae_memory.py --smoke   # seconds on a CPU: a narrow VAE (8/16 channels), 128x128

Each run is a fresh child process: it builds the real Wan2.2 VAE architecture (705M parameters, fp32)
with random weights, resets the peak-RSS counter, decodes ``--latent-frames`` latent frames and
reports the peak resident memory above the weights. Decoding is causal and frame-chunked, so the
working memory does not grow with the number of frames (only the output buffer does: 81 frames at
704x1280 are 0.88 GB in fp32). The printed ratios show how tiling bounds the working memory as the
resolution grows; the GPU figure at 704x1280 is measured by the same script with ``--device cuda``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from timing import parse_args

# one size: each decode is a fresh process that imports diffusers (~5 CPU s), so two sizes would double the time
SMOKE = {"sizes": ["128x128"], "latent_frames": 1, "base_dim": 8, "decoder_base_dim": 16}

CHILD = r"""
import json, sys, time, torch
from diffusers import AutoencoderKLWan
from comovi_core.codecs.vae_files import WAN22_LATENTS_MEAN, WAN22_LATENTS_STD
height, width, frames = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
tiled, device, base_dim, decoder_base_dim = sys.argv[4] == "1", sys.argv[5], int(sys.argv[6]), int(sys.argv[7])
torch.manual_seed(0)
torch.set_num_threads(1)  # fixed threads: CPU time compares between runs and machines
vae = AutoencoderKLWan(base_dim=base_dim, decoder_base_dim=decoder_base_dim, z_dim=48, is_residual=True,
                       in_channels=12, out_channels=12, patch_size=2, scale_factor_spatial=16, scale_factor_temporal=4,
                       latents_mean=list(WAN22_LATENTS_MEAN), latents_std=list(WAN22_LATENTS_STD)).eval().to(device)
if tiled:
    vae.enable_tiling()
z = torch.randn(1, 48, frames, height // 16, width // 16, device=device)
def peak_kib():
    if device == "cuda":
        return torch.cuda.max_memory_allocated() // 1024
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM"))
def now_kib():
    if device == "cuda":
        return torch.cuda.memory_allocated() // 1024
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmRSS"))
if device == "cuda":
    torch.cuda.reset_peak_memory_stats()
else:
    open("/proc/self/clear_refs", "w").write("5")
base = now_kib()
t0 = time.process_time()
with torch.no_grad():
    out = vae.decode(z).sample
if device == "cuda":
    torch.cuda.synchronize()
seconds = time.process_time() - t0
print(json.dumps({"work_gib": (peak_kib() - base) / 2**20, "seconds": seconds, "frames": out.shape[2]}))
"""


def run(height: int, width: int, frames: int, tiled: bool, device: str, dims: tuple[int, int] = (160, 256)) -> dict:
    """One decode in a fresh process; ``dims``: the VAE's encoder and decoder base channels (real: 160, 256)."""
    flag = "1" if tiled else "0"
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(height), str(width), str(frames), flag, device, *map(str, dims)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", nargs="+", default=["176x320", "352x640"], help="HxW output sizes, multiples of 16")
    p.add_argument("--latent-frames", type=int, default=2, help="latent frames decoded (2 -> 5 video frames)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--base-dim", type=int, default=160, help="VAE encoder base channels (160: the real Wan2.2 VAE)")
    p.add_argument(
        "--decoder-base-dim", type=int, default=256, help="VAE decoder base channels (256: the real Wan2.2 VAE)"
    )
    args = parse_args(p, SMOKE)
    rows = {}
    for size in args.sizes:
        h, w = (int(v) for v in size.split("x"))
        for tiled in (False, True):
            r = run(h, w, args.latent_frames, tiled, args.device, (args.base_dim, args.decoder_base_dim))
            rows[(size, tiled)] = r
            print(
                f"{size:>9} {'tiled' if tiled else 'untiled':>7}: working memory {r['work_gib']:.2f} GiB, "
                f"{r['frames']} frames (one run, {r['seconds']:.1f} CPU s on 1 thread: indicative, not a timing "
                "measurement)"
            )
    first, last = args.sizes[0], args.sizes[-1]

    def pixels(s):
        return int(s.split("x")[0]) * int(s.split("x")[1])

    print(
        f"pixels x{pixels(last) / pixels(first):.1f}: untiled memory "
        f"x{rows[(last, False)]['work_gib'] / rows[(first, False)]['work_gib']:.2f}, "
        f"tiled memory x{rows[(last, True)]['work_gib'] / rows[(first, True)]['work_gib']:.2f}"
    )
    print(
        f"at {last}: tiled / untiled working memory = "
        f"{rows[(last, True)]['work_gib'] / rows[(last, False)]['work_gib']:.2f}"
    )


if __name__ == "__main__":
    main()
