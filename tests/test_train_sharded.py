"""Sharded training (--sharding fsdp2, torch FSDP2 over 2 CPU processes with gloo): the same updates as DDP, states
written as one shard per process that resume under any strategy and process count, and join into one file
(``python -m comovi_core.consolidate``) that ``load_model`` stacks on the base weights."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file
from train_runs import cut_after_step1, max_diff, metrics_rows, run_train

from comovi_core.errors import CoMoViError
from comovi_core.inference.tiny import tiny_transformer
from comovi_core.model.loading import load_model
from comovi_core.model.saving import save_checkpoint
from comovi_core.training.consolidate import consolidate
from comovi_core.training.state import StateTensors
from comovi_core.training.train import make_config, parse_args

# stage 2 (zero-linears, motion branch, 3D head train), 2 steps of 2 micro-batches: 2 processes x 1 or 1 x 2.
# Adam eps 1e-8 as in test_train's DDP test (with 1e-10 a ~0 gradient element may take a full step in one run only).
COMMON = ["--preset", "tiny", "--synthetic", "2", "--stage", "2", "--steps", "2", "--adam-eps", "1e-8"]
STEP2 = "step_000002.safetensors"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("sharded")
    validate = ["--validate-every", "2", "--validate-steps", "2"]  # every process takes part under FSDP2
    run_train([*COMMON, *validate, "--grad-accum", "1", "--save-every", "1", "--sharding", "fsdp2"], root / "fsdp", 2)
    run_train([*COMMON, *validate, "--grad-accum", "1"], root / "ddp", 2)
    return root


def test_fsdp2_makes_the_ddp_update_and_writes_one_shard_per_process(runs):
    fsdp, ddp = (json.loads((runs / d / "summary.json").read_text()) for d in ("fsdp", "ddp"))
    assert fsdp["processes"] == ddp["processes"] == 2
    assert fsdp["first_loss"] == pytest.approx(ddp["first_loss"], rel=1e-6)  # measured: equal
    assert fsdp["last_loss"] == pytest.approx(ddp["last_loss"], rel=1e-6)
    a, b = (load_file(str(runs / d / STEP2)) for d in ("fsdp", "ddp"))
    assert max_diff(a, b) < 1e-5  # measured 1.03e-6 (gradient sums in another order)
    start = tiny_transformer(0).state_dict()
    assert any(not torch.equal(a[k], start[k]) for k in a if k.startswith("zero_linears."))  # it trained
    rows, ref = metrics_rows(runs / "fsdp"), metrics_rows(runs / "ddp")
    assert [r["grad_norm"] for r in rows] == pytest.approx([r["grad_norm"] for r in ref], rel=1e-5)
    for name in ("val_loss_motion", "val_loss_video", "val_loss_smpl"):
        assert rows[1][name] == pytest.approx(ref[1][name], rel=1e-5), name
    samples = [load_file(str(runs / d / "validation" / "step_000002.safetensors")) for d in ("fsdp", "ddp")]
    assert max_diff(*samples) < 1e-4
    state = runs / "fsdp" / "state_000002"
    names = sorted(p.name for p in state.glob("*.safetensors"))
    assert names == [
        "optimizer-rank00000-of-00002.safetensors",
        "optimizer-rank00001-of-00002.safetensors",
        "rng_0.safetensors",
        "rng_1.safetensors",
        "trainable-rank00000-of-00002.safetensors",
        "trainable-rank00001-of-00002.safetensors",
    ]
    info = json.loads((state / "state.json").read_text())
    assert info["shards"] == 2 and info["train"]["sharding"] == "fsdp2"
    halves = [load_file(str(state / f"trainable-rank0000{r}-of-00002.safetensors")) for r in (0, 1)]
    name = "motion.blocks.0.attn1.to_q.weight"  # 96 x 96 in tiny: rows 0-47 on process 0, 48-95 on process 1
    assert [h[name].shape[0] for h in halves] == [48, 48]
    assert torch.equal(torch.cat([h[name] for h in halves]), a[name].float())


@pytest.mark.slow  # eight more runs (about 25 s on 2 cores): the CI's second step (pytest -m slow)
def test_sharded_state_resumes_bit_identical_and_under_another_strategy(runs, tmp_path):
    unbroken = load_file(str(runs / "fsdp" / STEP2))
    cut_after_step1(runs / "fsdp", tmp_path / "same")
    done = run_train([*COMMON, "--grad-accum", "1", "--sharding", "fsdp2"], tmp_path / "same", 2)
    assert "resumed from" in done.stderr
    assert max_diff(load_file(str(tmp_path / "same" / STEP2)), unbroken) == 0.0  # measured: bit-identical
    # the same state, one process (all shards joined): data parallel with twice the accumulation, then one process
    # of FSDP2 with its shards, gradients and AdamW state in CPU memory (a process group of one)
    for sharding in ("ddp", "fsdp2_offload"):
        cut_after_step1(runs / "fsdp", tmp_path / sharding)
        run_train([*COMMON, "--grad-accum", "2", "--sharding", sharding], tmp_path / sharding)
        assert max_diff(load_file(str(tmp_path / sharding / STEP2)), unbroken) < 1e-6  # measured 1.2e-7, 1.5e-8


def test_consolidated_state_equals_the_checkpoint_and_loads_on_the_base(runs, tmp_path, caplog):
    step = load_file(str(runs / "fsdp" / STEP2))
    out = consolidate(runs / "fsdp" / "state_000002", tmp_path / "s2.safetensors")
    joined = load_file(str(out))
    info = json.loads((runs / "fsdp" / "state_000002" / "state.json").read_text())
    assert sorted(joined) == sorted(info["names"]) and len(joined) == 120  # motion branch, zero-linears, 3D head
    assert max_diff(joined, {k: step[k] for k in joined}) == 0.0  # tiny trains in fp32: the masters are the model
    save_checkpoint(tiny_transformer(0), tmp_path / "base.safetensors")
    model, _ = load_model(None, [tmp_path / "base.safetensors", out], dtype=torch.float32)
    assert max_diff(model.state_dict(), step) == 0.0
    half = consolidate(runs / "fsdp" / "state_000002", tmp_path / "s2_bf16.safetensors", torch.bfloat16)
    assert {t.dtype for t in load_file(str(half)).values()} == {torch.bfloat16}


def test_bad_states_and_flags_are_refused_with_the_fix(runs, tmp_path, caplog):
    broken = tmp_path / "state_000002"
    shutil.copytree(runs / "fsdp" / "state_000002", broken)
    (broken / "trainable-rank00001-of-00002.safetensors").unlink()
    with pytest.raises(CoMoViError, match=r"complete set of its shards is missing \(found: trainable-rank00000"):
        StateTensors(broken, "trainable")
    with pytest.raises(CoMoViError, match="not a training state"):
        consolidate(tmp_path, tmp_path / "x.safetensors")
    lora = tmp_path / "state_000003"
    lora.mkdir()
    (lora / "state.json").write_text(json.dumps({"step": 3, "names": [], "train": {"lora": 8, "preset": "tiny"}}))
    with pytest.raises(CoMoViError, match="LoRA run's state: its checkpoint .*step_000003.safetensors"):
        consolidate(lora, tmp_path / "x.safetensors")
    wrong = tmp_path / "state_000004"
    shutil.copytree(runs / "fsdp" / "state_000002", wrong)
    shard = wrong / "trainable-rank00001-of-00002.safetensors"
    tensors = load_file(str(shard))
    tensors["motion.blocks.0.attn1.to_q.weight"] = tensors["motion.blocks.0.attn1.to_q.weight"][:8]
    save_file(tensors, str(shard))
    with pytest.raises(CoMoViError, match=r"joins to \(56, 96\), state.json says \(96, 96\)"):
        consolidate(wrong, tmp_path / "x.safetensors")
    assert not (tmp_path / "x.safetensors").exists()
    with pytest.raises(CoMoViError, match="--lora .* run it with --sharding ddp"):
        make_config(parse_args([*COMMON, "--lora", "4", "--sharding", "fsdp2", "--out", str(tmp_path / "r")]))


def test_shipped_accelerate_configs_launch_one_process_per_gpu():
    from pathlib import Path

    from accelerate.commands.config.config_args import ClusterConfig

    folder = Path(__file__).resolve().parents[1] / "configs" / "accelerate"
    found = {p.name: ClusterConfig.from_yaml_file(str(p)) for p in sorted(folder.glob("*.yaml"))}
    assert {n: (c.distributed_type.value, c.num_machines, c.num_processes) for n, c in found.items()} == {
        "fsdp2_8_gpus.yaml": ("FSDP", 1, 8),
        "one_node_8_gpus.yaml": ("MULTI_GPU", 1, 8),
        "two_nodes_16_gpus.yaml": ("MULTI_GPU", 2, 16),
        "zero2_8_gpus.yaml": ("DEEPSPEED", 1, 8),
        "zero3_8_gpus.yaml": ("DEEPSPEED", 1, 8),
        "zero3_offload_8_gpus.yaml": ("DEEPSPEED", 1, 8),
    }
    assert {c.mixed_precision for c in found.values()} == {"bf16"}  # as train's default --precision
