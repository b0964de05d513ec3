"""Load the Wan2.2 VAE (diffusers ``AutoencoderKLWan``) from any of the layouts users have on disk.

- a diffusers folder (``vae/`` with ``config.json``), or the Wan2.2-TI2V-5B-Diffusers root that holds one;
- the original single file: ``Wan2.2_VAE.pth`` from Wan-AI/Wan2.2-TI2V-5B, or ComfyUI's
  ``wan2.2_vae.safetensors`` (same key names), also inside a ``first_stage_model.`` / ``vae.`` prefix;
- a diffusers-named single ``.safetensors`` file.

Single files carry no config: the architecture is read from tensor shapes, and the per-channel
latent mean/std (needed to normalise latents for the transformer) are the Wan2.2 values when the
latent has 48 channels. ``.pth`` files are read with ``torch.load(weights_only=True)`` (tensors only).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import torch

from ..errors import CoMoViError

log = logging.getLogger(__name__)

# Wan2.2 VAE per-channel latent statistics (48 channels), as published with the model's config.
WAN22_LATENTS_MEAN = (
    -0.2289,
    -0.0052,
    -0.1323,
    -0.2339,
    -0.2799,
    0.0174,
    0.1838,
    0.1557,
    -0.1382,
    0.0542,
    0.2813,
    0.0891,
    0.1570,
    -0.0098,
    0.0375,
    -0.1825,
    -0.2246,
    -0.1207,
    -0.0698,
    0.5109,
    0.2665,
    -0.2108,
    -0.2158,
    0.2502,
    -0.2055,
    -0.0322,
    0.1109,
    0.1567,
    -0.0729,
    0.0899,
    -0.2799,
    -0.1230,
    -0.0313,
    -0.1649,
    0.0117,
    0.0723,
    -0.2839,
    -0.2083,
    -0.0520,
    0.3748,
    0.0152,
    0.1957,
    0.1433,
    -0.2944,
    0.3573,
    -0.0548,
    -0.1681,
    -0.0667,
)
WAN22_LATENTS_STD = (
    0.4765,
    1.0364,
    0.4514,
    1.1677,
    0.5313,
    0.4990,
    0.4818,
    0.5013,
    0.8158,
    1.0344,
    0.5894,
    1.0901,
    0.6885,
    0.6165,
    0.8454,
    0.4978,
    0.5759,
    0.3523,
    0.7135,
    0.6804,
    0.5833,
    1.4146,
    0.8986,
    0.5659,
    0.7069,
    0.5338,
    0.4889,
    0.4917,
    0.4069,
    0.4999,
    0.6866,
    0.4093,
    0.5709,
    0.6065,
    0.6415,
    0.4944,
    0.5726,
    1.2042,
    0.5458,
    1.6887,
    0.3971,
    1.0600,
    0.3943,
    0.5537,
    0.5444,
    0.4089,
    0.7468,
    0.7744,
)

_PREFIXES = ("first_stage_model.", "vae.", "model.")
_RESIDUAL = {
    "residual.0.gamma": "norm1.gamma",
    "residual.2.weight": "conv1.weight",
    "residual.2.bias": "conv1.bias",
    "residual.3.gamma": "norm2.gamma",
    "residual.6.weight": "conv2.weight",
    "residual.6.bias": "conv2.bias",
    "shortcut.weight": "conv_shortcut.weight",
    "shortcut.bias": "conv_shortcut.bias",
}
_STAGE = re.compile(r"(encoder|decoder)\.(down|up)samples\.(\d+)\.(?:down|up)samples\.(\d+)\.(.+)$")
_MIDDLE = re.compile(r"(encoder|decoder)\.middle\.(\d)\.(.+)$")


def original_to_diffusers_vae_key(key: str) -> str:
    """Original Wan2.2 VAE name -> diffusers ``AutoencoderKLWan`` name (``is_residual=True`` layout)."""
    simple = {
        "conv1.weight": "quant_conv.weight",
        "conv1.bias": "quant_conv.bias",
        "conv2.weight": "post_quant_conv.weight",
        "conv2.bias": "post_quant_conv.bias",
    }
    if key in simple:
        return simple[key]
    part, _, rest = key.partition(".")
    if rest in ("conv1.weight", "conv1.bias"):
        return f"{part}.conv_in.{rest.split('.')[1]}"
    if rest == "head.0.gamma":
        return f"{part}.norm_out.gamma"
    if rest in ("head.2.weight", "head.2.bias"):
        return f"{part}.conv_out.{rest.split('.')[2]}"
    m = _MIDDLE.match(key)
    if m:
        side, idx, tail = m.groups()
        if idx == "1":
            return f"{side}.mid_block.attentions.0.{tail}"
        return f"{side}.mid_block.resnets.{int(idx) // 2}.{_RESIDUAL.get(tail, tail)}"
    m = _STAGE.match(key)
    if m:
        side, direction, stage, idx, tail = m.groups()
        blocks = f"{side}.{direction}_blocks.{stage}"
        if tail in _RESIDUAL:
            return f"{blocks}.resnets.{idx}.{_RESIDUAL[tail]}"
        if tail.startswith(("resample.", "time_conv.")):
            return f"{blocks}.{direction}sampler.{tail}"
    raise CoMoViError(f"unexpected tensor {key!r} in the VAE file: not a Wan2.2 VAE name")


_RESIDUAL_BACK = {v: k for k, v in _RESIDUAL.items()}
_BLOCK_BACK = re.compile(r"(encoder|decoder)\.(down|up)_blocks\.(\d+)\.(resnets\.(\d+)|downsampler|upsampler)\.(.+)$")
_MID_BACK = re.compile(r"(encoder|decoder)\.mid_block\.(resnets|attentions)\.(\d)\.(.+)$")


def diffusers_to_original_vae_key(key: str, num_res_blocks: int) -> str:
    """The inverse of ``original_to_diffusers_vae_key`` (the resampler's index follows the residual blocks)."""
    simple = {"quant_conv": "conv1", "post_quant_conv": "conv2"}
    head, _, param = key.rpartition(".")
    if head in simple:
        return f"{simple[head]}.{param}"
    side, _, rest = key.partition(".")
    named = {"conv_in": "conv1", "norm_out": "head.0", "conv_out": "head.2"}
    if rest.split(".")[0] in named:
        return f"{side}.{named[rest.split('.')[0]]}.{rest.split('.', 1)[1]}"
    m = _MID_BACK.match(key)
    if m:
        side, kind, idx, tail = m.groups()
        if kind == "attentions":
            return f"{side}.middle.1.{tail}"
        return f"{side}.middle.{2 * int(idx)}.{_RESIDUAL_BACK[tail]}"
    m = _BLOCK_BACK.match(key)
    if m:
        side, direction, stage, which, idx, tail = m.groups()
        prefix = f"{side}.{direction}samples.{stage}.{direction}samples"
        if idx is not None:
            return f"{prefix}.{idx}.{_RESIDUAL_BACK[tail]}"
        return f"{prefix}.{num_res_blocks + (direction == 'up')}.{tail}"
    raise CoMoViError(f"unexpected tensor {key!r}: not an AutoencoderKLWan (Wan2.2) name")


def _read_single_file(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from ..files.weights import open_safetensors

        with open_safetensors(path, reader="copy") as fh:  # tensors of their own, not pages of the mapped file
            return {name: fh.get_tensor(name) for name in fh.keys()}
    if path.suffix in (".pth", ".pt", ".ckpt"):
        try:
            data = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
        except Exception as exc:  # the restricted unpickler refuses anything that is not plain tensors
            raise CoMoViError(f"{path}: not a plain tensor checkpoint ({exc}); use a .safetensors VAE file") from exc
        data = data.get("state_dict", data) if isinstance(data, dict) else data
        if not isinstance(data, dict):
            raise CoMoViError(f"{path}: expected a dict of tensors")
        return data
    raise CoMoViError(f"{path}: unknown VAE file type {path.suffix!r} (use .safetensors or the official .pth)")


def _strip_prefix(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    for prefix in _PREFIXES:
        if any(k.startswith(prefix + "encoder.") for k in sd):
            return {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}
    return sd


def _config_from_original(sd: dict[str, torch.Tensor]) -> dict:
    if "encoder.conv1.weight" not in sd or "conv2.weight" not in sd:
        raise CoMoViError(
            "this file is not a Wan VAE (no encoder.conv1 / conv2 tensors); "
            "use Wan2.2_VAE.pth or ComfyUI's wan2.2_vae.safetensors"
        )
    in_channels = sd["encoder.conv1.weight"].shape[1]
    z_dim = sd["conv2.weight"].shape[0]
    if in_channels == 3:
        raise CoMoViError(
            f"this is the Wan2.1 VAE ({z_dim} latent channels): CoMoVi and Wan2.2-TI2V-5B need the "
            "Wan2.2 VAE (48 channels): Wan2.2_VAE.pth or ComfyUI's wan2.2_vae.safetensors"
        )
    base_dim = sd["encoder.conv1.weight"].shape[0]
    stages = sorted({int(m.group(3)) for k in sd if (m := _STAGE.match(k)) and m.group(1) == "encoder"})
    dim_mult = [sd[f"encoder.downsamples.{i}.downsamples.0.residual.2.weight"].shape[0] // base_dim for i in stages]
    num_res_blocks = len(
        {
            int(m.group(4))
            for k in sd
            if (m := _STAGE.match(k))
            and m.group(1) == "encoder"
            and m.group(3) == "0"
            and m.group(5) == "residual.0.gamma"
        }
    )
    temporal = [
        any(k.startswith(f"encoder.downsamples.{i}.downsamples.{num_res_blocks}.time_conv.") for k in sd)
        for i in stages[:-1]
    ]
    patch = int(round((in_channels / 3) ** 0.5))
    return dict(
        base_dim=base_dim,
        decoder_base_dim=sd["decoder.head.0.gamma"].shape[0] // dim_mult[0],
        z_dim=z_dim,
        dim_mult=dim_mult,
        num_res_blocks=num_res_blocks,
        temperal_downsample=temporal,
        is_residual=True,
        in_channels=in_channels,
        out_channels=sd["decoder.head.2.weight"].shape[0],
        patch_size=patch,
        scale_factor_temporal=2 ** sum(temporal),
        scale_factor_spatial=patch * 2 ** (len(dim_mult) - 1),
    )


def _latent_stats(z_dim: int, latents_mean, latents_std) -> dict:
    if latents_mean is not None and latents_std is not None:
        if len(latents_mean) != z_dim or len(latents_std) != z_dim:
            raise CoMoViError(f"latents_mean/std need {z_dim} values each")
        return dict(latents_mean=list(latents_mean), latents_std=list(latents_std))
    if z_dim == len(WAN22_LATENTS_MEAN):
        return dict(latents_mean=list(WAN22_LATENTS_MEAN), latents_std=list(WAN22_LATENTS_STD))
    raise CoMoViError(f"a {z_dim}-channel VAE file carries no latent mean/std: pass latents_mean and latents_std")


def load_wan22_vae(path: str | Path, dtype: torch.dtype = torch.float32, latents_mean=None, latents_std=None):
    """Any Wan2.2 VAE layout -> ``AutoencoderKLWan`` in eval mode (on CPU)."""
    from diffusers import AutoencoderKLWan

    path = Path(path)
    if path.is_dir():
        folder = path / "vae" if (path / "vae" / "config.json").exists() else path
        if not (folder / "config.json").exists():
            raise CoMoViError(
                f"{path}: no VAE here: expected a diffusers vae/ folder with config.json, "
                "or point to the single file (Wan2.2_VAE.pth / wan2.2_vae.safetensors)"
            )
        return AutoencoderKLWan.from_pretrained(folder, torch_dtype=dtype).eval()
    if not path.exists():
        raise CoMoViError(
            f"VAE file not found: {path} (download wan2.2_vae.safetensors into models/vae, "
            "or the Wan2.2-TI2V-5B-Diffusers folder)"
        )
    sd = _strip_prefix(_read_single_file(path))
    if "encoder.conv_in.weight" in sd:  # already diffusers names
        raise CoMoViError(f"{path}: a diffusers-named VAE file needs its config: load the vae/ folder instead")
    config = _config_from_original(sd)
    config.update(_latent_stats(config["z_dim"], latents_mean, latents_std))
    # one tensor at a time, each stored tensor let go as its converted copy is made: never both whole copies
    converted = {original_to_diffusers_vae_key(k): sd.pop(k).to(dtype) for k in list(sd)}
    with torch.device("meta"):
        vae = AutoencoderKLWan(**config)
    missing, unexpected = vae.load_state_dict(converted, strict=False, assign=True)
    if missing or unexpected:
        raise CoMoViError(
            f"{path}: VAE tensors do not match the Wan2.2 layout read from its shapes "
            f"(missing {len(missing)}, e.g. {missing[:2]}; unexpected {len(unexpected)}, e.g. {unexpected[:2]})"
        )
    log.info("loaded the Wan2.2 VAE from %s (original layout, z_dim %d)", path.name, config["z_dim"])
    return vae.eval()
