"""Wan2.2 VAE from every layout: original single file (.safetensors / .pth), diffusers folder; host codecs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from comovi_core.codecs.tiny import tiny_vae
from comovi_core.codecs.vae import PixelCodec, decode_latents, encode_frames
from comovi_core.codecs.vae_files import (
    WAN22_LATENTS_MEAN,
    WAN22_LATENTS_STD,
    diffusers_to_original_vae_key,
    load_wan22_vae,
    original_to_diffusers_vae_key,
)
from comovi_core.errors import CoMoViError

DATA = Path(__file__).parent / "data" / "wan22_vae_tiny"
ORIGINAL = DATA / "wan22_vae_original_tiny.safetensors"
IDENTITY = dict(latents_mean=[0.0] * 8, latents_std=[1.0] * 8)


def _to_original(vae) -> dict[str, torch.Tensor]:
    n = vae.config.num_res_blocks
    return {diffusers_to_original_vae_key(k, n): v.detach().clone() for k, v in vae.state_dict().items()}


def test_original_file_matches_the_independent_reference():
    """ComfyUI's port of the original Wan2.2 VAE made the fixture; diffusers + our names must compute the same."""
    vae = load_wan22_vae(ORIGINAL, **IDENTITY)
    assert (vae.config.base_dim, vae.config.decoder_base_dim, vae.config.z_dim) == (4, 8, 8)
    assert list(vae.config.dim_mult) == [1, 2, 2, 2] and list(vae.config.temperal_downsample) == [False, True, True]
    assert vae.config.num_res_blocks == 1 and vae.config.patch_size == 2 and vae.config.scale_factor_spatial == 16
    io = load_file(str(DATA / "wan22_vae_original_tiny_io.safetensors"))
    with torch.no_grad():
        latents = vae.encode(io["video"]).latent_dist.mode()
        decoded = vae.decode(io["latents"]).sample
    assert torch.allclose(latents, io["latents"], atol=1e-5), (latents - io["latents"]).abs().max()
    assert torch.allclose(decoded, io["decoded"].clamp(-1, 1), atol=1e-5), (
        (decoded - io["decoded"].clamp(-1, 1)).abs().max()
    )


def test_key_names_round_trip():
    original = load_file(str(ORIGINAL))
    assert all(diffusers_to_original_vae_key(original_to_diffusers_vae_key(k), 1) == k for k in original)
    assert (
        original_to_diffusers_vae_key("decoder.upsamples.2.upsamples.2.time_conv.weight")
        == "decoder.up_blocks.2.upsampler.time_conv.weight"
    )
    assert (
        original_to_diffusers_vae_key("encoder.middle.2.residual.3.gamma") == "encoder.mid_block.resnets.1.norm2.gamma"
    )
    diffusers_names = list(tiny_vae().state_dict())
    assert [
        original_to_diffusers_vae_key(diffusers_to_original_vae_key(k, 1)) for k in diffusers_names
    ] == diffusers_names


def test_pth_prefixed_and_folder_layouts_load_the_same_weights(tmp_path):
    reference = load_wan22_vae(ORIGINAL, **IDENTITY).state_dict()
    torch.save({"first_stage_model." + k: v for k, v in load_file(str(ORIGINAL)).items()}, tmp_path / "Wan2.2_VAE.pth")
    from_pth = load_wan22_vae(tmp_path / "Wan2.2_VAE.pth", **IDENTITY).state_dict()
    load_wan22_vae(ORIGINAL, **IDENTITY).save_pretrained(tmp_path / "root" / "vae")
    from_root = load_wan22_vae(tmp_path / "root").state_dict()  # the Wan2.2-TI2V-5B-Diffusers root holds vae/
    for other in (from_pth, from_root):
        assert other.keys() == reference.keys() and all(torch.equal(other[k], reference[k]) for k in reference)


def test_48_channel_file_gets_the_wan22_latent_statistics(tmp_path):
    source = tiny_vae()
    save_file(_to_original(source), str(tmp_path / "wan2.2_vae.safetensors"))
    vae = load_wan22_vae(tmp_path / "wan2.2_vae.safetensors")
    assert len(vae.config.latents_mean) == 48 and vae.config.latents_mean[0] == pytest.approx(-0.2289)
    assert vae.config.latents_std[-1] == pytest.approx(0.7744) and min(WAN22_LATENTS_STD) > 0.3
    # golden sums, checked when written against both diffusers' conversion script and ComfyUI's Wan22 latent format
    assert sum(WAN22_LATENTS_MEAN) == pytest.approx(-0.5589, abs=1e-4) and sum(WAN22_LATENTS_STD) == pytest.approx(
        32.536, abs=1e-3
    )
    z = torch.randn(1, 48, 2, 2, 2, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(vae.decode(z).sample, source.decode(z).sample)


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/comovi_pwned",))


@pytest.mark.parametrize(
    "content, message",
    [
        ("evil", "not a plain tensor checkpoint"),
        ("wan21", "Wan2.1 VAE"),
        ("other", "not a Wan VAE"),
        ("diffusers", "needs its config"),
        ("z8", "latents_mean"),
    ],
)
def test_bad_vae_files_are_refused_clearly(tmp_path, content, message):
    path = tmp_path / ("vae.pth" if content == "evil" else "vae.safetensors")
    if content == "evil":
        torch.save({"x": _Evil()}, path)
    elif content == "wan21":
        save_file(
            {"encoder.conv1.weight": torch.zeros(96, 3, 3, 3, 3), "conv2.weight": torch.zeros(16, 16, 1, 1, 1)},
            str(path),
        )
    elif content == "other":
        save_file({"blocks.0.self_attn.q.weight": torch.zeros(2, 2)}, str(path))
    elif content == "diffusers":
        save_file({k: v.contiguous() for k, v in tiny_vae().state_dict().items()}, str(path))
    else:
        path = ORIGINAL
    with pytest.raises(CoMoViError, match=message):
        load_wan22_vae(path)
    assert not Path("/tmp/comovi_pwned").exists()


def test_missing_paths_say_what_to_download(tmp_path):
    with pytest.raises(CoMoViError, match="wan2.2_vae.safetensors"):
        load_wan22_vae(tmp_path / "nope.safetensors")
    with pytest.raises(CoMoViError, match="no VAE here"):
        load_wan22_vae(tmp_path)


def test_pixel_codec_equals_the_diffusers_path():
    """A host VAE seen through PixelCodec ((T,H,W,3) pixels, raw latents) gives the pipeline the same latents."""
    vae = tiny_vae()
    vae.register_to_config(
        latents_mean=[0.1 * (i % 5) for i in range(48)], latents_std=[0.5 + 0.02 * i for i in range(48)]
    )

    def host_encode(pixels):  # ComfyUI: (T, H, W, 3) in [0, 1] -> raw (1, C, f, h, w)
        return vae.encode(pixels.permute(3, 0, 1, 2)[None] * 2 - 1).latent_dist.mode()

    def host_decode(raw):  # ComfyUI: raw latents -> (T, H, W, 3) in [0, 1]
        return ((vae.decode(raw).sample[0].permute(1, 2, 3, 0) + 1) / 2).clamp(0, 1)

    codec = PixelCodec(host_encode, host_decode, vae.config.latents_mean, vae.config.latents_std)
    frames = torch.rand(1, 3, 5, 32, 32, generator=torch.Generator().manual_seed(2)) * 2 - 1
    with torch.no_grad():
        direct, through = encode_frames(vae, frames), encode_frames(codec, frames)
        assert torch.allclose(direct, through, atol=1e-6) and direct.std() > 0.1
        assert torch.allclose(decode_latents(vae, direct), decode_latents(codec, direct), atol=1e-5)
    wrong = PixelCodec(host_encode, host_decode, [0.0] * 16, [1.0] * 16)
    with pytest.raises(CoMoViError, match="48 channels|16 channels"):
        encode_frames(wrong, frames)
