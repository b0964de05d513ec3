"""The model size is read from the checkpoint (stored config, else shapes); diffusers save/load with config."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from comovi_core.errors import CoMoViError
from comovi_core.model.config import PRESETS, get_config
from comovi_core.model.loading import build_model, load_model
from comovi_core.model.saving import save_checkpoint
from comovi_core.model.sizes import infer_config

VARIANTS = {
    "tiny": get_config("tiny"),
    "no_head": get_config("tiny", smpl_layers=0),
    "paper_interleave": get_config(
        "tiny", num_layers=4, interleave=2, interaction="paper", smpl_layers=1, smpl_ffn_dim=64, smpl_max_frames=12
    ),
    "dual_none_head": get_config("tiny", interaction="dual", num_joints=22, ffn_dim=64),
    "none": get_config("tiny", interaction="none", smpl_layers=0),
}


def _random(cfg, seed=0):
    torch.manual_seed(seed)
    model = build_model(cfg, "cpu")
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p))
    return model


def _same_weights(a, b, prefix=""):
    sa, sb = a.state_dict(), b.state_dict()
    keys = [k for k in sa if k.startswith(prefix)]
    assert keys and set(keys) <= set(sb) and all(torch.equal(sa[k], sb[k]) for k in keys)


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_is_read_back_from_its_shapes(name):
    """Real sizes included (meta tensors: no memory): shapes alone give the preset back."""
    cfg = PRESETS[name]
    shapes = {k: tuple(v.shape) for k, v in build_model(cfg, "meta").state_dict().items()}
    found, determined = infer_config(shapes)
    assert found == cfg
    assert {"in_channels", "ffn_dim", "num_layers", "interleave", "text_dim", "freq_dim"} <= determined


@pytest.mark.parametrize("name", list(VARIANTS))
def test_variants_are_read_back_from_shapes(name):
    cfg = VARIANTS[name]
    found, _ = infer_config({k: tuple(v.shape) for k, v in build_model(cfg, "meta").state_dict().items()})
    assert found == cfg


@pytest.mark.parametrize("name", ["tiny", "paper_interleave", "dual_none_head"])
def test_load_model_reads_the_size_of_each_layout(tmp_path, name):
    cfg = VARIANTS[name]
    model = _random(cfg)
    ours = save_checkpoint(model, tmp_path / "ours.safetensors", "comovi")  # + ours.json (stored config)
    release = save_checkpoint(model, tmp_path / "release.safetensors", "comovi_release")  # shapes only
    model.save_pretrained(tmp_path / "pretrained")  # diffusers: config.json + diffusion_pytorch_model.safetensors
    for path in (ours, release, tmp_path / "pretrained"):
        back, report = load_model(None, path, dtype=torch.float32)
        assert back.comovi_config == cfg, path
        _same_weights(model, back)
        assert report.copied == 0 and report.zeroed == 0
    # base layouts (ComfyUI single file, diffusers folder): the RGB branch's size; copy, zero coupling, no head
    base_cfg = cfg.replace(smpl_layers=0, interaction="single_m2v", interleave=1)
    for layout, target in (("wan_original", "wan_comfy.safetensors"), ("wan_diffusers", "Wan-Diffusers")):
        back, report = load_model(None, save_checkpoint(model, tmp_path / target, layout), dtype=torch.float32)
        expect = base_cfg.replace(
            smpl_ffn_dim=back.comovi_config.smpl_ffn_dim,
            smpl_max_frames=back.comovi_config.smpl_max_frames,
            num_joints=back.comovi_config.num_joints,
        )
        assert back.comovi_config == expect and back.smpl_head is None
        _same_weights(model, back, "rgb.")
        assert report.copied > 0


def test_shapes_cannot_tell_m2v_from_v2m_a_stored_config_can(tmp_path):
    """single_m2v and single_v2m have the same zero-linears: shapes give the release default, ours say which."""
    cfg = get_config("tiny", interaction="single_v2m")
    model = _random(cfg)
    release = save_checkpoint(model, tmp_path / "r.safetensors", "comovi_release")
    assert load_model(None, release, dtype=torch.float32)[0].comovi_config.interaction == "single_m2v"
    assert load_model(cfg, release, dtype=torch.float32)[0].comovi_config.interaction == "single_v2m"  # user's pick
    ours = save_checkpoint(model, tmp_path / "o.safetensors", "comovi")
    assert load_model(None, ours, dtype=torch.float32)[0].comovi_config.interaction == "single_v2m"
    ours.with_suffix(".json").unlink()  # the safetensors alone: shapes again
    assert load_model(None, ours, dtype=torch.float32)[0].comovi_config.interaction == "single_m2v"


def test_stacked_base_and_comovi_file_give_the_comovi_size(tmp_path):
    cfg = VARIANTS["paper_interleave"]
    model = _random(cfg)
    base = save_checkpoint(model, tmp_path / "Wan-Diffusers", "wan_diffusers")
    full = save_checkpoint(model, tmp_path / "full.safetensors", "comovi_release")
    from safetensors.torch import load_file

    top = {k: v for k, v in load_file(full).items() if not k.startswith(("rgb_", "text_", "time_"))}
    save_file(top, str(tmp_path / "top.safetensors"))
    back, report = load_model(None, [base, tmp_path / "top.safetensors"], dtype=torch.float32)
    assert back.comovi_config == cfg and report.copied == 0
    _same_weights(model, back)


def test_a_given_size_that_contradicts_the_file_is_refused(tmp_path):
    path = save_checkpoint(_random(VARIANTS["tiny"]), tmp_path / "t.safetensors", "comovi_release")
    with pytest.raises(
        CoMoViError,
        match=r"t.safetensors: the requested model size contradicts the weights "
        r"\(hidden size: 3072 requested, 96 in the file; .*ffn_dim: 14336 requested, "
        r"128 in the file.*leave the size unset",
    ):
        load_model(get_config("wan2.2-ti2v-5b"), path)
    with pytest.raises(CoMoViError, match=r"interleave: 2 requested, 1 in the file"):
        load_model(get_config("tiny", num_layers=2, interleave=2), path)
    with pytest.raises(CoMoViError, match=r"smpl_layers: 3 requested, 2 in the file"):
        load_model(get_config("tiny", smpl_layers=3), path)
    with pytest.raises(CoMoViError, match=r"interaction: dual requested, single_m2v or single_v2m in the file"):
        load_model(get_config("tiny", interaction="dual"), path)
    # agreeing sizes load; a head the file lacks is dropped, not a contradiction
    assert load_model(get_config("tiny"), path, dtype=torch.float32)[0].comovi_config == VARIANTS["tiny"]
    base = save_checkpoint(_random(VARIANTS["tiny"]), tmp_path / "b.safetensors", "wan_original")
    assert load_model(get_config("tiny"), base, dtype=torch.float32)[0].comovi_config.smpl_layers == 0


def test_a_stored_config_that_contradicts_its_weights_is_named(tmp_path):
    path = save_checkpoint(_random(VARIANTS["tiny"]), tmp_path / "o.safetensors", "comovi")
    meta = json.loads(path.with_suffix(".json").read_text())
    meta["config"]["ffn_dim"] = 256
    path.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(
        CoMoViError,
        match=r"o.safetensors \(stored CoMoVi config\): the stored config does not match "
        r"the weights \(ffn_dim 256 in the config vs 128 in the weights\)",
    ):
        load_model(None, path)


def test_diffusers_save_pretrained_round_trips_with_config(tmp_path):
    """ModelMixin/ConfigMixin: config.json holds the CoMoViConfig fields; from_pretrained rebuilds the same model."""
    from comovi_core.model.dual import CoMoViTransformer

    cfg = VARIANTS["paper_interleave"]
    model = _random(cfg).eval()
    model.save_pretrained(tmp_path / "m")
    stored = json.loads((tmp_path / "m" / "config.json").read_text())
    assert stored["_class_name"] == "CoMoViTransformer" and stored["interaction"] == "paper"
    assert stored["num_layers"] == 4 and stored["interleave"] == 2 and stored["patch_size"] == [1, 2, 2]
    assert (tmp_path / "m" / "diffusion_pytorch_model.safetensors").is_file()
    back = CoMoViTransformer.from_pretrained(tmp_path / "m").eval()
    assert back.comovi_config == cfg and back.config.interaction == "paper"
    _same_weights(model, back)
    g = torch.Generator().manual_seed(0)
    lat = torch.randn(1, 48, 3, 4, 4, generator=g)
    t = torch.full((1, 12), 600.0)
    ctx = torch.randn(1, cfg.text_len, cfg.text_dim, generator=g)
    pose = torch.randn(1, 144, generator=g)
    with torch.no_grad():
        a, b = model(lat, lat * 0.5, t, ctx, pose), back(lat, lat * 0.5, t, ctx, pose)
    assert torch.equal(a.rgb, b.rgb) and torch.equal(a.motion, b.motion) and torch.equal(a.smpl_6d, b.smpl_6d)


def test_constructor_arguments_are_the_config_fields():
    """One source of truth: the registered diffusers config is exactly the dataclass."""
    import dataclasses
    import inspect

    from comovi_core.model.dual import CoMoViTransformer

    params = list(inspect.signature(CoMoViTransformer.__init__).parameters)[1:]
    assert params == [f.name for f in dataclasses.fields(PRESETS["tiny"])]
    model = build_model(VARIANTS["none"], "meta")
    assert {k: v for k, v in model.config.items() if not k.startswith("_")} == VARIANTS["none"].to_dict()
    with pytest.raises(CoMoViError, match="unknown interaction 'sideways'"):
        CoMoViTransformer(interaction="sideways")  # checked before any module is built
