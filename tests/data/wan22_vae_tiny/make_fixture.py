"""Regenerate the tiny original-layout Wan2.2 VAE fixture with ComfyUI's VAE code (dev tool, not run in CI).

python tests/data/wan22_vae_tiny/make_fixture.py /path/to/ComfyUI
"""

import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, sys.argv[1])
sys.argv = sys.argv[:1] + ["--cpu"]
import comfy.cli_args  # noqa: E402  (ComfyUI is on sys.path only from here)

comfy.cli_args.args.cpu = True
import comfy.ldm.wan.vae2_2 as wan22  # noqa: E402  (imported after the --cpu flag is set)

here = Path(__file__).parent
model = wan22.WanVAE(
    dim=4, dec_dim=8, z_dim=8, dim_mult=[1, 2, 2, 2], num_res_blocks=1, temperal_downsample=[False, True, True]
).eval()
g = torch.Generator().manual_seed(1)
with torch.no_grad():  # ComfyUI's ops skip weight init: fill every tensor from the seeded generator
    for name, p in model.state_dict().items():
        if name.endswith("gamma"):
            p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
        else:
            p.copy_(torch.randn(p.shape, generator=g) * (0.5 / max(1, p[0].numel()) ** 0.5 if p.dim() > 1 else 0.05))
    video = torch.rand(1, 3, 5, 32, 64, generator=g) * 2 - 1
    latents = model.encode(video)
    decoded = model.decode(latents)
save_file({k: t.contiguous() for k, t in model.state_dict().items()}, str(here / "wan22_vae_original_tiny.safetensors"))
save_file(
    {"video": video, "latents": latents, "decoded": decoded}, str(here / "wan22_vae_original_tiny_io.safetensors")
)
