"""LoRA fine-tuning (issue 10): only adapters train, LoRA files are small, load back exactly, and drive generate."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import comovi_core.inference.tiny
from comovi_core.body.smpl import load_body_model
from comovi_core.errors import CoMoViError
from comovi_core.files.video import read_video
from comovi_core.inference.generate import main as generate_main
from comovi_core.model.config import get_config
from comovi_core.model.loading import load_model
from comovi_core.model.lora import add_lora, apply_lora, parse_targets, with_lora
from comovi_core.model.memory import enable_fp8_storage
from comovi_core.model.saving import save_checkpoint
from comovi_core.training.data import synthetic_clips
from comovi_core.training.step import training_step
from comovi_core.training.train import TrainConfig, train
from comovi_core.training.train import main as train_main

pytest.importorskip("peft")  # training with --lora needs it (the dev extra installs it)

RANK = 8
CFG = TrainConfig(
    preset="tiny",
    stage=1,
    steps=20,
    lr=2e-2,
    warmup=1,
    grad_accum=1,
    frames=9,
    height=64,
    width=64,
    save_every=100,
    log_every=100,
    gradient_checkpointing=False,
    precision="fp32",
    lora=RANK,
)


pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")


def _eval_loss(model, parts, body, clip, context) -> float:
    """The motion flow loss on 8 fixed (noise, timestep) draws."""
    generator = torch.Generator().manual_seed(123)
    with torch.no_grad():
        return float(
            np.mean(
                [
                    training_step(model, parts["vae"], body, clip, context, CFG, generator)["motion"].item()
                    for _ in range(8)
                ]
            )
        )


def _inputs(seed: int = 7):
    """Fixed tiny forward inputs: latents (1, 48, 3, 4, 4), per-token timesteps, text, start pose."""
    g = torch.Generator().manual_seed(seed)

    def x(*s):
        return torch.randn(*s, generator=g)

    return x(1, 48, 3, 4, 4), x(1, 48, 3, 4, 4), torch.full((1, 12), 500.0), x(1, 32, 48), x(1, 144)


def _forward(model):
    with torch.no_grad():
        out = model.eval()(*_inputs())
    return torch.cat([out.rgb.flatten(), out.motion.flatten(), out.smpl_6d.flatten()])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A 20-step stage-1 rank-8 LoRA run on one synthetic clip (tiny preset, fp32)."""
    body = load_body_model(None)
    parts = comovi_core.inference.tiny.tiny_components(0)
    model = parts["transformer"]
    base = {k: v.clone() for k, v in model.state_dict().items()}
    clips = synthetic_clips(body, 1, 9, 64, 64, seed=0)
    context = parts["text_encoder"]([clips[0].caption])
    start = _eval_loss(model, parts, body, clips[0], context)
    out = tmp_path_factory.mktemp("lora_run")
    summary = train(CFG, model, clips, out, body=body, vae=parts["vae"], text_encoder=parts["text_encoder"])
    end = _eval_loss(model.eval(), parts, body, clips[0], context)
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    return {
        "model": model,
        "base": base,
        "out": out,
        "file": out / "step_000020.safetensors",
        "start": start,
        "end": end,
        "summary": summary,
    }


def test_lora_trains_only_the_adapters_and_the_loss_falls(run):
    model, base = run["model"], run["base"]
    state = model.state_dict()
    adapters = {k: v for k, v in state.items() if ".lora_" in k}
    frozen = {k.replace(".base_layer.", "."): v for k, v in state.items() if ".lora_" not in k}
    assert frozen.keys() == base.keys() and all(torch.equal(frozen[k], base[k]) for k in base)  # base untouched
    assert {n for n, p in model.named_parameters() if p.requires_grad} == set(adapters)
    # 2 motion blocks x (8 attention + 2 FFN linears), each with lora_A and lora_B
    assert len(adapters) == 2 * 10 * 2 and all(k.startswith("motion.blocks.") for k in adapters)
    fresh = comovi_core.inference.tiny.tiny_transformer(0)
    init = dict(add_lora(fresh, RANK, RANK, parse_targets("", 1), seed=0))  # the run's adapters before training
    assert all(not torch.equal(init[k], adapters[k]) for k in adapters)  # every adapter moved
    assert all(float(adapters[k].abs().max()) > 0 for k in adapters if ".lora_B." in k)  # B started at zero
    share = sum(p.numel() for p in init.values()) / sum(p.numel() for p in fresh.parameters())
    assert 0.01 < share < 0.05, share  # measured 3.9 % of the tiny model (31,744 of 818,672)
    assert run["end"] < 0.9 * run["start"], (run["start"], run["end"])  # measured 1.296 -> 1.085


def test_lora_checkpoint_holds_only_adapters_and_is_small(run, tmp_path):
    file = run["file"]
    with safe_open(str(file), "pt") as fh:
        keys, meta = list(fh.keys()), json.loads(fh.metadata()["comovi_lora"])
    assert len(keys) == 40 and all(k.endswith((".lora_A.weight", ".lora_B.weight")) for k in keys)
    assert meta["rank"] == RANK and meta["alpha"] == RANK and meta["targets"] == ["motion_attn", "motion_ffn"]
    assert meta["preset"] == "tiny" and meta["stage"] == 1 and meta["step"] == 20
    assert json.loads(file.with_suffix(".json").read_text())["rank"] == RANK
    full = save_checkpoint(
        comovi_core.inference.tiny.tiny_transformer(0), tmp_path / "full.safetensors", dtype=torch.float32
    )
    ratio = file.stat().st_size / full.stat().st_size
    assert ratio < 0.05, ratio  # measured 4.0 % (132 kB vs 3.29 MB; tiny: dim 96, rank 8)
    assert not list(run["out"].glob(".*"))  # written atomically: no temp files left


def test_round_trip_fresh_base_plus_lora_equals_the_trained_model(run, tmp_path):
    trained = _forward(run["model"])
    base_model = comovi_core.inference.tiny.tiny_transformer(0)
    base = _forward(base_model)
    merged = with_lora(base_model, run["file"])
    assert torch.equal(_forward(base_model), base)  # with_lora leaves the given model alone
    assert (_forward(merged) - trained).abs().max() < 1e-5  # measured 6e-7
    assert (base - trained).abs().max() > 1e-2  # the LoRA does something
    full = save_checkpoint(base_model, tmp_path / "base.safetensors", dtype=torch.float32)
    loaded, report = load_model(get_config("tiny"), full, dtype=torch.float32, lora=run["file"])
    assert torch.equal(_forward(loaded), _forward(merged)) and "LoRA step_000020.safetensors" in report.summary()
    half = comovi_core.inference.tiny.tiny_transformer(0)
    assert apply_lora(half, run["file"], 0.0) == 20 and torch.equal(_forward(half), base)  # scale 0: the base
    # fp8 storage set up before loading: each weight merged in bf16, then stored in fp8, as merging before fp8 did
    fp8, _ = load_model(get_config("tiny"), full, lora=run["file"], storage_dtype=torch.float8_e4m3fn)
    bf16, _ = load_model(get_config("tiny"), full, lora=run["file"])
    enable_fp8_storage(bf16)
    a, b = fp8.state_dict(), bf16.state_dict()
    assert sum(v.dtype == torch.float8_e4m3fn for v in a.values()) == 80
    assert all(
        a[k].dtype == b[k].dtype and torch.equal(a[k].view(torch.uint8), b[k].view(torch.uint8))
        if a[k].dtype == torch.float8_e4m3fn
        else torch.equal(a[k], b[k])
        for k in a
    )


def test_generate_with_lora_differs_from_base_and_equals_merging_by_hand(run, tmp_path, monkeypatch):
    def outputs(name, *argv):
        assert generate_main(["--preset", "tiny", "--steps", "2", "--out", str(tmp_path / name), *argv]) == 0
        motion = np.load(tmp_path / name / "motion.npz")
        return read_video(tmp_path / name / "motion_map.mp4"), motion["body_pose"]

    base = outputs("base")
    lora = outputs("lora", "--lora", str(run["file"]))
    zero = outputs("zero", "--lora", str(run["file"]), "--lora-scale", "0")
    assert not np.array_equal(base[1], lora[1]) and not np.array_equal(base[0], lora[0])
    assert all(np.array_equal(a, b) for a, b in zip(base, zero))
    assert json.loads((tmp_path / "lora" / "meta.json").read_text())["lora"] == str(run["file"])
    build = comovi_core.inference.tiny.tiny_components

    def by_hand(seed):
        parts = build(seed)
        apply_lora(parts["transformer"], run["file"])
        return parts

    monkeypatch.setattr(comovi_core.inference.tiny, "tiny_components", by_hand)
    hand = outputs("hand")
    assert all(np.array_equal(a, b) for a, b in zip(hand, lora))


def test_lora_run_resumes_bit_identical(tmp_path):
    argv = [
        "--preset",
        "tiny",
        "--synthetic",
        "2",
        "--stage",
        "2",
        "--lora",
        "4",
        "--lora-alpha",
        "8",
        "--save-every",
        "2",
        "--warmup",
        "2",
    ]
    assert train_main([*argv, "--steps", "4", "--out", str(tmp_path / "whole")]) == 0
    assert train_main([*argv, "--steps", "2", "--out", str(tmp_path / "cut")]) == 0
    assert train_main([*argv, "--steps", "4", "--out", str(tmp_path / "cut")]) == 0  # --resume latest
    a, b = (load_file(str(tmp_path / d / "step_000004.safetensors")) for d in ("whole", "cut"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert any(k.startswith("zero_linears.") for k in a) and any(k.startswith("smpl_head.") for k in a)
    assert json.loads((tmp_path / "cut" / "summary.json").read_text())["resumed_from"] == 2


def test_bad_lora_files_and_flags_say_which_file_and_the_fix(run, tmp_path, caplog):
    model = comovi_core.inference.tiny.tiny_transformer(0)
    full = save_checkpoint(model, tmp_path / "full.safetensors", dtype=torch.float32)
    with pytest.raises(CoMoViError, match=r"full\.safetensors is not a CoMoVi LoRA file .*full model checkpoint"):
        apply_lora(model, full)
    with pytest.raises(CoMoViError, match=r"step_000020\.safetensors: this is a LoRA file .*apply the LoRA on top"):
        load_model(get_config("tiny"), run["file"], dtype=torch.float32)
    tensors, meta = load_file(str(run["file"])), json.loads(run["file"].with_suffix(".json").read_text())
    other = dict(meta, preset="medium", config=get_config("medium").to_dict())
    save_file(tensors, str(tmp_path / "medium.safetensors"), metadata={"comovi_lora": json.dumps(other)})
    with pytest.raises(CoMoViError, match=r"medium\.safetensors: trained on preset 'medium'.*same --preset"):
        apply_lora(model, tmp_path / "medium.safetensors")
    key = "motion.blocks.0.attn1.to_q.lora_A.weight"
    bad = dict(tensors, **{key: torch.zeros(RANK, 64)})
    save_file(bad, str(tmp_path / "shape.safetensors"), metadata={"comovi_lora": json.dumps(dict(meta, config=None))})
    before = _forward(model)
    with pytest.raises(
        CoMoViError,
        match=r"shape\.safetensors: the adapter of 'motion\.blocks\.0\.attn1\.to_q' is "
        r"\(96, 8\) x \(8, 64\) but the layer is 96 x 96 .*preset 'tiny'",
    ):
        apply_lora(model, tmp_path / "shape.safetensors")
    assert torch.equal(_forward(model), before)  # nothing merged when one adapter is bad
    with pytest.raises(CoMoViError, match="LoRA file not found: .*nowhere.safetensors"):
        apply_lora(model, tmp_path / "nowhere.safetensors")
    out = str(tmp_path / "o")
    assert generate_main(["--preset", "tiny", "--out", out, "--lora", str(full)]) == 2
    assert "is not a CoMoVi LoRA file" in caplog.text and not (tmp_path / "o").exists()
    common = ["--preset", "tiny", "--synthetic", "1", "--steps", "1", "--out", out]
    assert train_main([*common, "--lora", "4", "--lora-targets", "motion_attn,everything"]) == 2
    assert "unknown group(s) ['everything']" in caplog.text
    assert train_main([*common, "--lora-targets", "motion_attn"]) == 2 and "need --lora RANK" in caplog.text


def test_comfyui_lora_node_merges_into_a_copy_and_keeps_the_loaded_model(run, ext):
    import shutil

    loras = ext["base"] / "models" / "loras"
    loras.mkdir(parents=True, exist_ok=True)
    shutil.copy(run["file"], loras / "walk.safetensors")
    node, loader = ext["nodes"]["CoMoViLoraLoader"], ext["nodes"]["CoMoViLoadModels"]
    assert node.define_schema().inputs[1].options == ["walk.safetensors"]
    demo = next(o for o in loader.define_schema().inputs[0].options if o.startswith("tiny demo"))
    loaded = loader.execute(demo, "none (base only: untrained copy)", "float32", False, 0, False, "tiny").args[0]
    base = _forward(loaded.transformer)
    with_node = node.execute(loaded, "walk.safetensors", 0.5).args[0]
    by_hand = comovi_core.inference.tiny.tiny_transformer(0)
    apply_lora(by_hand, run["file"], 0.5)
    assert torch.equal(_forward(with_node.transformer), _forward(by_hand))
    assert torch.equal(_forward(loaded.transformer), base)  # the loader's output is unchanged
    assert with_node.vae is loaded.vae and "LoRA walk.safetensors at 0.5" in with_node.summary
    assert with_node.patchers[id(loaded.vae)] is loaded.patchers[id(loaded.vae)]  # one patcher per shared module
    shared = with_node.transformer.rgb.blocks[0].attn1.to_q.weight  # not adapted: the same tensor, no copy
    assert shared is loaded.transformer.rgb.blocks[0].attn1.to_q.weight
    assert node.execute(loaded, "walk.safetensors", 0.0).args[0] is loaded
