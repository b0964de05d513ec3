"""Checkpoint layouts: round trips, base + CoMoVi stacking, clear errors, the inspect CLI."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from comovi_core.errors import CoMoViError
from comovi_core.model.config import get_config
from comovi_core.model.inspect import main as checkpoint_main
from comovi_core.model.loading import build_model, load_model, open_checkpoint
from comovi_core.model.saving import save_checkpoint

CFG = get_config("tiny")


def _trained_like(cfg=CFG, seed=0):
    torch.manual_seed(seed)
    model = build_model(cfg, "cpu")
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p))
    return model


def _assert_same(a, b, prefix=""):
    sa, sb = a.state_dict(), b.state_dict()
    keys = [k for k in sa if k.startswith(prefix)]
    assert keys and all(torch.equal(sa[k], sb[k]) for k in keys)


@pytest.mark.parametrize(
    "layout,name,fmt",
    [("comovi", "ours.safetensors", "comovi"), ("comovi_release", "release.safetensors", "comovi_release")],
)
def test_full_model_round_trips_bit_identical(tmp_path, layout, name, fmt):
    model = _trained_like()
    path = save_checkpoint(model, tmp_path / name, layout)
    assert open_checkpoint(path).format == fmt
    back, report = load_model(CFG, path, dtype=torch.float32)
    _assert_same(model, back)
    assert report.copied == 0 and report.zeroed == 0 and report.has_smpl_head


@pytest.mark.parametrize(
    "layout,name,fmt",
    [
        ("wan_original", "wan2.2_ti2v_5B_fp16.safetensors", "wan_original"),
        ("wan_diffusers", "Wan2.2-TI2V-5B-Diffusers", "wan_diffusers"),
    ],
)
def test_base_alone_gives_an_untrained_copy(tmp_path, layout, name, fmt):
    model = _trained_like()
    path = save_checkpoint(model, tmp_path / name, layout)
    assert open_checkpoint(path).format == fmt
    back, report = load_model(CFG, path, dtype=torch.float32)
    _assert_same(model, back, "rgb.")  # the base round trips bit-identically
    for j, block in enumerate(back.motion.blocks):  # the motion branch is a full copy
        assert all(
            torch.equal(a, b) for a, b in zip(block.state_dict().values(), back.rgb.blocks[j].state_dict().values())
        )
    assert all(float(p.abs().max()) == 0 for p in back.zero_linears.parameters())
    assert not report.has_smpl_head and back.smpl_head is None
    assert report.copied > 0 and report.zeroed == 2 * CFG.num_motion_blocks


def test_comovi_file_on_top_of_base_in_both_base_layouts(tmp_path):
    base_model, comovi = _trained_like(seed=1), _trained_like(seed=2)
    comovi_file = tmp_path / "comovi.safetensors"
    state = {
        k: v for k, v in load_file(save_checkpoint(comovi, tmp_path / "full.safetensors", "comovi_release")).items()
    }
    # a CoMoVi file without the shared embeddings and RGB branch, as if fine-tuned on top of the base
    save_file({k: v for k, v in state.items() if not k.startswith(("rgb_", "text_", "time_"))}, str(comovi_file))
    for layout, name in (("wan_original", "base.safetensors"), ("wan_diffusers", "base_dir")):
        base = save_checkpoint(base_model, tmp_path / name, layout)
        model, report = load_model(CFG, [base, comovi_file], dtype=torch.float32)
        _assert_same(model, base_model, "rgb.")
        for prefix in ("motion.", "zero_linears.", "smpl_head."):
            _assert_same(model, comovi, prefix)
        assert report.copied == 0 and report.has_smpl_head


def test_comovi_file_alone_without_base_is_refused(tmp_path):
    state = load_file(save_checkpoint(_trained_like(), tmp_path / "full.safetensors", "comovi_release"))
    save_file(
        {k: v for k, v in state.items() if not k.startswith(("rgb_", "text_", "time_"))},
        str(tmp_path / "c.safetensors"),
    )
    with pytest.raises(CoMoViError, match=r"RGB branch \(\d+ tensors\).*pass the base Wan2.2-TI2V-5B"):
        load_model(CFG, tmp_path / "c.safetensors")


def test_fp8_and_fp16_base_files_load(tmp_path):
    model = _trained_like()
    state = load_file(save_checkpoint(model, tmp_path / "b.safetensors", "wan_original"))
    save_file({k: v.to(torch.float8_e4m3fn) for k, v in state.items()}, str(tmp_path / "fp8.safetensors"))
    back, _ = load_model(CFG, tmp_path / "fp8.safetensors", dtype=torch.bfloat16)
    w = back.rgb.blocks[0].attn1.to_q.weight
    assert w.dtype == torch.bfloat16
    torch.testing.assert_close(w.float(), model.rgb.blocks[0].attn1.to_q.weight.to(torch.float8_e4m3fn).float())


def test_wrong_models_are_named(tmp_path):
    model = _trained_like()
    state = load_file(save_checkpoint(model, tmp_path / "b.safetensors", "wan_original"))
    key = "model.diffusion_model.patch_embedding.weight"
    wan21 = dict(state, **{key: torch.zeros(96, 16, 1, 2, 2)})
    save_file(wan21, str(tmp_path / "wan21.safetensors"))
    with pytest.raises(CoMoViError, match=r"16 latent channels \(a Wan2.1 or Wan2.2-14B file"):
        load_model(CFG, tmp_path / "wan21.safetensors")
    big = dict(state, **{key: torch.zeros(5120, 48, 1, 2, 2)})
    save_file(big, str(tmp_path / "big.safetensors"))
    with pytest.raises(CoMoViError, match=r"hidden size: 96 requested, 5120 \(Wan 14B\) in the file.*leave the size"):
        load_model(CFG, tmp_path / "big.safetensors")
    save_file(
        {"encoder.conv1.weight": torch.zeros(1), "decoder.conv_out.weight": torch.zeros(1)},
        str(tmp_path / "vae.safetensors"),
    )
    with pytest.raises(CoMoViError, match="this is a VAE checkpoint"):
        load_model(CFG, tmp_path / "vae.safetensors")
    bad = dict(state, **{"model.diffusion_model.blocks.1.ffn.0.weight": torch.zeros(7, 96)})
    save_file(bad, str(tmp_path / "bad.safetensors"))
    for config in (CFG, None):  # the size is read from block 0; a later block that disagrees is named
        with pytest.raises(CoMoViError, match=r"blocks.1.ffn.0.weight' has shape \(7, 96\).*RGB branch"):
            load_model(config, tmp_path / "bad.safetensors")
    (tmp_path / "w.pt").write_bytes(b"x")
    with pytest.raises(CoMoViError, match="only .safetensors"):
        load_model(CFG, tmp_path / "w.pt")


def test_inspect_cli(tmp_path, capsys):
    model = _trained_like()
    path = save_checkpoint(model, tmp_path / "m.safetensors", "comovi_release")
    base = save_checkpoint(model, tmp_path / "base.safetensors", "wan_original")
    assert checkpoint_main(["inspect", str(path), str(base)]) == 0
    out = capsys.readouterr().out
    n_head = sum(p.numel() for p in model.smpl_head.parameters())
    assert "layout      : comovi_release" in out and "layout      : wan_original" in out
    assert f"3D head                     :    {n_head / 1e6:.3f} M params" in out
    assert "3D head     : present" in out and "3D head     : absent" in out
    assert "hidden 96, latent channels 48, 2 RGB blocks, 2 motion blocks" in out
    assert checkpoint_main(["inspect", str(tmp_path / "missing.safetensors")]) == 2


def test_truncated_or_foreign_files_get_a_clear_error(tmp_path, capsys, caplog):
    """A download cut short or a file that is not safetensors: one message that says to fetch it again."""
    from comovi_core.codecs.vae_files import load_wan22_vae

    save_file({"x": torch.zeros(1000)}, str(tmp_path / "good.safetensors"))
    data = (tmp_path / "good.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.safetensors").write_bytes(b"\xff" * 64)
    for name in ("cut.safetensors", "junk.safetensors"):
        with pytest.raises(
            CoMoViError, match=f"{name} is incomplete or not a safetensors file .*download or save it again"
        ):
            load_model(CFG, [tmp_path / name])
        with pytest.raises(CoMoViError, match="is incomplete or not a safetensors file"):
            load_wan22_vae(tmp_path / name)
    assert checkpoint_main(["inspect", str(tmp_path / "cut.safetensors")]) == 2
    assert "is incomplete or not a safetensors file" in caplog.text
