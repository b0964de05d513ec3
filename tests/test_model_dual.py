"""The dual-branch transformer: release parity, diffusers invariance, coupling modes, 3D head."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from diffusers import WanTransformer3DModel
from safetensors.torch import load_file

from comovi_core.model.config import get_config
from comovi_core.model.loading import build_model, load_model

DATA = Path(__file__).parent / "data" / "release_tiny"


def _release_config(mode: str):
    rc = json.loads((DATA / f"{mode}.json").read_text())["config"]
    return get_config(
        "tiny",
        interaction=rc["interaction"],
        smpl_ffn_dim=rc["smpl_ffn_dim"],
        smpl_layers=rc["smpl_predictor_layers"] if rc["predict_smpl"] else 0,
    )


def _padded_context(io, text_len):
    ctx = io["context"]
    return torch.cat([ctx, ctx.new_zeros(text_len - ctx.shape[0], ctx.shape[1])])[None]


def _rel(a, b):
    return float((a.float() - b).norm() / b.norm())


@pytest.mark.parametrize("mode,atol,rtol", [("none", 1e-4, 1e-5), ("single_m2v", 5e-2, 1e-2)])
def test_reproduces_the_release_outputs(mode, atol, rtol):
    """Fixtures made by the release's own code (tiny config, bf16 weights); single_m2v ran under bf16 autocast."""
    cfg = _release_config(mode)
    model, report = load_model(cfg, DATA / f"{mode}.safetensors", dtype=torch.float32)
    io = load_file(DATA / f"{mode}_io.safetensors")
    with torch.no_grad():
        out = model(
            io["rgb_latent"],
            io["motion_latent"],
            io["timestep_per_token"],
            _padded_context(io, cfg.text_len),
            io.get("init_smpl_pose_6d"),
        )
    pairs = [(out.rgb, io["out_rgb"]), (out.motion, io["out_motion"])]
    if mode == "single_m2v":
        assert report.has_smpl_head and out.smpl_6d.shape == (1, 80, 144)
        pairs.append((out.smpl_6d[:, None], io["out_smpl_6d"]))
    else:
        assert not report.has_smpl_head and out.smpl_6d is None and model.smpl_head is None
    for ours, ref in pairs:
        assert float((ours - ref).abs().max()) < atol and _rel(ours, ref) < rtol


def _random_model(cfg, seed=0, head=False):
    """Random weights everywhere but the zero-linears (and the 3D head unless ``head``)."""
    torch.manual_seed(seed)
    model = build_model(cfg, "cpu").eval()
    skip = ("zero_linears",) if head else ("zero_linears", "smpl_head")
    with torch.no_grad():  # diffusers zero-inits some tables; give everything a value
        for name, p in model.named_parameters():
            if not name.startswith(skip):
                p.copy_(
                    torch.randn_like(p) * 0.05
                    + (1.0 if name.endswith("norm_q.weight") or name.endswith("norm_k.weight") else 0)
                )
    return model


def _inputs(cfg, frames=3, size=4, seed=1):
    g = torch.Generator().manual_seed(seed)

    def lat():
        return torch.randn(1, cfg.in_channels, frames, size, size, generator=g)

    tokens = frames * (size // 2) ** 2
    timestep = torch.full((1, tokens), 700.0)
    timestep[:, : (size // 2) ** 2] = 0  # latent frame 0 is the clean start frame
    ctx = torch.randn(1, cfg.text_len, cfg.text_dim, generator=g)
    return lat(), lat(), timestep, ctx


def test_branches_equal_diffusers_wan_when_zero_linears_are_zero():
    cfg = get_config("tiny", smpl_layers=0)
    model = _random_model(cfg)
    rgb_lat, motion_lat, t, ctx = _inputs(cfg)
    ref = WanTransformer3DModel(**cfg.wan_kwargs()).eval()
    ref.load_state_dict(model.rgb.state_dict())
    with torch.no_grad():
        out = model(rgb_lat, motion_lat, t, ctx)
        expect_rgb = ref(rgb_lat, t, ctx, return_dict=False)[0]
        motion_ref = WanTransformer3DModel(**cfg.wan_kwargs()).eval()
        state = {**model.rgb.state_dict(), **model.motion.state_dict()}
        motion_ref.load_state_dict(state)
        expect_motion = motion_ref(motion_lat, t, ctx, return_dict=False)[0]
    torch.testing.assert_close(out.rgb, expect_rgb, rtol=0, atol=1e-5)
    torch.testing.assert_close(out.motion, expect_motion, rtol=0, atol=1e-5)
    assert float((out.rgb - out.motion).abs().max()) > 1e-2  # the branches do have different weights


def _outputs(model, inputs, start_pose):
    with torch.no_grad():
        return model(*inputs, start_pose)


@pytest.mark.parametrize(
    "mode,linear,changes",
    [
        ("single_m2v", 0, {"rgb", "smpl"}),  # x_rgb += ZL0(x_motion) after layer 0; the head reads x_rgb of layer 1
        ("single_v2m", 1, {"motion", "smpl"}),  # x_motion += ZL1(x_rgb) before the last motion block
        ("dual", 0, {"motion", "smpl"}),  # v->m of layer 0 (its m->v partners are still zero)
        ("dual", 3, {"rgb"}),  # m->v of the last layer, after the head has read the streams
        ("paper", 1, {"rgb", "smpl"}),  # ZL1: m->v of layer 0 and the head's fusion of layer 1
        ("paper", 2, {"rgb"}),  # ZL2: m->v of the last layer; the motion stream is never touched
    ],
)
def test_each_interaction_changes_exactly_its_streams(mode, linear, changes):
    cfg = get_config("tiny", interaction=mode)
    model = _random_model(cfg, head=True)
    inputs, pose = _inputs(cfg), torch.randn(1, 144)
    base = _outputs(model, inputs, pose)
    with torch.no_grad():
        model.zero_linears[linear].weight.copy_(torch.randn_like(model.zero_linears[linear].weight) * 0.1)
    after = _outputs(model, inputs, pose)
    fields = {"rgb": "rgb", "motion": "motion", "smpl": "smpl_6d"}
    changed = {name for name, f in fields.items() if not torch.equal(getattr(base, f), getattr(after, f))}
    assert changed == changes


def test_fusion_layer_changes_only_the_3d_head():
    cfg = get_config("tiny")
    model = _random_model(cfg, head=True)
    inputs, pose = _inputs(cfg), torch.randn(1, 144)
    base = _outputs(model, inputs, pose)
    with torch.no_grad():
        model.smpl_head.fusion[1].weight.add_(0.1)
    after = _outputs(model, inputs, pose)
    assert torch.equal(base.rgb, after.rgb) and torch.equal(base.motion, after.motion)
    assert not torch.equal(base.smpl_6d, after.smpl_6d)


@pytest.mark.parametrize("latent_frames", [2, 3, 6, 21, 31])
def test_head_works_for_any_4k_plus_1_frames(latent_frames):
    cfg = get_config("tiny")
    model = _random_model(cfg)
    inputs = _inputs(cfg, frames=latent_frames)
    pose = torch.randn(1, 144)
    out = _outputs(model, inputs, pose)  # freshly initialised head: zero projections -> the start pose
    frames = 4 * (latent_frames - 1) + 1
    assert out.smpl_6d.reshape(frames - 1, 24, 6).shape == (frames - 1, 24, 6)
    torch.testing.assert_close(out.smpl_6d, pose[:, None].expand(1, frames - 1, 144))
    with torch.no_grad():
        for p in model.smpl_head.parameters():
            p.copy_(torch.randn_like(p) * 0.05)
    moved = _outputs(model, inputs, pose).smpl_6d
    assert (
        moved.shape == (1, frames - 1, 144)
        and torch.isfinite(moved).all()
        and float((moved - pose[:, None]).abs().mean()) > 1e-3
    )


def test_real_size_parameter_counts():
    without = build_model(get_config("wan2.2-ti2v-5b", smpl_layers=0))
    with_head = build_model(get_config("wan2.2-ti2v-5b"))

    def n(m):
        return sum(p.numel() for p in m.parameters())

    assert 10.1e9 < n(without) < 10.3e9  # docs/model.md: dual model ~10.2B
    assert 11.0e9 < n(with_head) < 11.2e9  # ~ +0.9B for the 3D head
    assert n(without.rgb) - n(without.motion) == sum(p.numel() for p in without.rgb.condition_embedder.parameters())


def test_layer_callback_can_cancel_between_layers():
    cfg = get_config("tiny", smpl_layers=0)
    model = _random_model(cfg)
    seen = []
    model.layer_callback = seen.append
    with torch.no_grad():
        model(*_inputs(cfg))
    assert seen == [0, 1]

    def stop(j):
        if j == 0:
            raise KeyboardInterrupt

    model.layer_callback = stop
    with pytest.raises(KeyboardInterrupt):
        model(*_inputs(cfg))


def test_interleave_pairs_one_motion_block_with_several_rgb_blocks():
    cfg = get_config("tiny", smpl_layers=0, num_layers=4, interleave=2, interaction="single_m2v")
    model = _random_model(cfg)
    assert len(model.motion.blocks) == 2 and len(model.rgb.blocks) == 4 and len(model.zero_linears) == 2
    rgb_lat, motion_lat, t, ctx = _inputs(cfg)
    with torch.no_grad():
        out = model(rgb_lat, motion_lat, t, ctx)
        ref = WanTransformer3DModel(**cfg.wan_kwargs()).eval()
        ref.load_state_dict(model.rgb.state_dict())
        torch.testing.assert_close(out.rgb, ref(rgb_lat, t, ctx, return_dict=False)[0], rtol=0, atol=1e-5)
        motion_ref = WanTransformer3DModel(**cfg.wan_kwargs(2)).eval()
        motion_ref.load_state_dict({**model.rgb.state_dict(), **model.motion.state_dict()}, strict=False)
        torch.testing.assert_close(out.motion, motion_ref(motion_lat, t, ctx, return_dict=False)[0], rtol=0, atol=1e-5)
        model.zero_linears[0].weight.add_(0.1)  # the m->v add after layer pair 0 changes RGB only
        coupled = model(rgb_lat, motion_lat, t, ctx)
    assert torch.equal(coupled.motion, out.motion) and not torch.equal(coupled.rgb, out.rgb)
