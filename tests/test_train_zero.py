"""DeepSpeed ZeRO training (--sharding zero2 / zero3 / *_offload over 2 CPU processes with gloo): the same updates as
DDP, states in our shard format that resume bit-identically under the same strategy and under DDP, FSDP2 or the
other stage with any process count, fp32 masters under bf16, and DeepSpeed chosen from an accelerate config."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from train_runs import cut_after_step1, max_diff, metrics_rows, run_train

from comovi_core.errors import CoMoViError
from comovi_core.inference.tiny import tiny_transformer
from comovi_core.training.consolidate import consolidate
from comovi_core.training.state import StateTensors
from comovi_core.training.train import make_config, parse_args

# as tests/test_train_sharded.py: tiny stage 2, 2 steps of 2 micro-batches (2 processes x 1, or 1 x 2)
COMMON = ["--preset", "tiny", "--synthetic", "2", "--stage", "2", "--steps", "2", "--adam-eps", "1e-8"]
STEP2 = "step_000002.safetensors"
VALIDATE = ["--validate-every", "2", "--validate-steps", "2"]
CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "accelerate"


def _step2(run) -> dict:
    return load_file(str(run / STEP2))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("zero")
    saves = ["--grad-accum", "1", "--save-every", "1"]
    # as a user starts it: accelerate launch with the shipped ZeRO-3 config (eight processes there, two here)
    done = run_train([*COMMON, *saves, *VALIDATE], root / "zero3", 2, CONFIGS / "zero3_8_gpus.yaml")
    (root / "zero3.log").write_text(done.stderr)
    run_train([*COMMON, *saves, "--sharding", "zero2"], root / "zero2", 2)
    run_train([*COMMON, *saves, *VALIDATE], root / "ddp", 2)
    return root


# The parity and resume matrix below shares three 2-process runs (about 2 minutes on 2 cores): it runs in the CI's
# second step (pytest -m slow); the default set keeps the bf16 run, the flags and the configs.
@pytest.mark.slow
def test_zero_stages_make_the_ddp_update_and_write_one_shard_per_process(runs):
    ddp = json.loads((runs / "ddp" / "summary.json").read_text())
    for stage in ("zero2", "zero3"):
        summary = json.loads((runs / stage / "summary.json").read_text())
        assert summary["processes"] == 2
        assert summary["first_loss"] == pytest.approx(ddp["first_loss"], rel=1e-6)  # measured: equal
        assert summary["last_loss"] == pytest.approx(ddp["last_loss"], rel=1e-6)
        # measured 3.4e-6 for both: gradient sums in another order, and DeepSpeed's AdamW also decays the weights of
        # the 3D head's fusion layers that get no gradient (torch's AdamW skips them under DDP)
        assert max_diff(_step2(runs / stage), _step2(runs / "ddp")) < 2e-5
        rows, ref = metrics_rows(runs / stage), metrics_rows(runs / "ddp")
        assert [r["grad_norm"] for r in rows] == pytest.approx([r["grad_norm"] for r in ref], rel=1e-5)
    # zero3 splits the model as it is built (process 1 built it on the meta device): each holds half
    pattern = r"process (\d) holds (\d+) of the model's (\d+) parameter values"
    held = re.findall(pattern, (runs / "zero3.log").read_text())
    assert sorted(held) == [("0", "409336", "818672"), ("1", "409336", "818672")]
    start = tiny_transformer(0).state_dict()
    zero3 = _step2(runs / "zero3")
    assert any(not torch.equal(zero3[k], start[k]) for k in zero3 if k.startswith("zero_linears."))  # it trained
    rows, ref = metrics_rows(runs / "zero3"), metrics_rows(runs / "ddp")
    for name in ("val_loss_motion", "val_loss_video", "val_loss_smpl"):  # zero3: every process takes part
        assert rows[1][name] == pytest.approx(ref[1][name], rel=1e-5), name
    samples = [load_file(str(runs / d / "validation" / "step_000002.safetensors")) for d in ("zero3", "ddp")]
    assert max_diff(*samples) < 1e-4
    state = runs / "zero3" / "state_000002"
    info = json.loads((state / "state.json").read_text())
    assert info["shards"] == 2 and info["train"]["sharding"] == "zero3"  # from the accelerate config
    halves = [load_file(str(state / f"trainable-rank0000{r}-of-00002.safetensors")) for r in (0, 1)]
    name = "motion.blocks.0.attn1.to_q.weight"  # 96 x 96 in tiny: rows 0-47 on process 0, 48-95 on process 1
    assert [h[name].shape[0] for h in halves] == [48, 48]
    assert torch.equal(torch.cat([h[name] for h in halves]), zero3[name])  # fp32: the masters are the model
    moments = StateTensors(state, "optimizer")
    assert moments[f"{name}/exp_avg"].shape == (96, 96) and float(moments[f"{name}/step"]) == 2.0
    assert (
        consolidate(state, runs / "zero3.safetensors")
        and max_diff(load_file(str(runs / "zero3.safetensors")), {k: zero3[k] for k in info["names"]}) == 0.0
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("source", "sharding", "processes", "tolerance"),
    [
        ("zero3", "zero3", 2, 0.0),  # measured: bit-identical
        ("zero2", "zero2", 2, 0.0),  # measured: bit-identical
        ("zero3", "ddp", 1, 1e-5),  # 1 process x 2 micro-batches; measured 2.3e-6
        ("ddp", "zero2", 2, 1e-5),  # measured 2.3e-6
        ("zero3", "zero3_offload", 1, 1e-6),  # a process group of one, AdamW on the CPU; measured 1.5e-8
        ("zero2", "zero2_offload", 2, 0.0),  # measured: bit-identical
    ],
)
def test_zero_state_resumes_bit_identical_and_under_another_strategy(
    runs, tmp_path, source, sharding, processes, tolerance
):
    cut_after_step1(runs / source, tmp_path / "run")
    accumulate = str(2 // processes)
    done = run_train([*COMMON, "--grad-accum", accumulate, "--sharding", sharding], tmp_path / "run", processes)
    assert "resumed from" in done.stderr
    assert max_diff(_step2(tmp_path / "run"), _step2(runs / source)) <= tolerance


def test_bf16_zero_keeps_fp32_masters_so_every_trained_tensor_moves(tmp_path):
    """The real path (--precision bf16, lr 2e-5): DeepSpeed holds the model in bf16 and updates fp32 masters."""
    args = ["--preset", "tiny", "--synthetic", "2", "--stage", "2", "--steps", "3", "--lr", "2e-5"]
    run_train([*args, "--precision", "bf16", "--grad-accum", "1", "--sharding", "zero2"], tmp_path / "run", 2)
    masters = StateTensors(tmp_path / "run" / "state_000003", "trainable")
    start = tiny_transformer(0).state_dict()
    moved = {k: float((masters[k] != start[k].to(torch.bfloat16).float()).float().mean()) for k in masters.keys()}
    assert len(moved) == 120 and min(moved.values()) > 0.9  # measured: at least 98.9 % of each tensor's elements
    checkpoint = load_file(str(tmp_path / "run" / "step_000003.safetensors"))
    assert {t.dtype for t in checkpoint.values()} == {torch.bfloat16}


def test_zero_flags_are_refused_with_the_fix(tmp_path, monkeypatch):
    out = ["--out", str(tmp_path / "r")]
    with pytest.raises(CoMoViError, match="--lora .* run it with --sharding ddp"):
        make_config(parse_args([*COMMON, "--lora", "4", "--sharding", "zero2", *out]))
    with pytest.raises(CoMoViError, match="adamw8bit .* does not take sharded parameters: use it with --sharding ddp"):
        make_config(parse_args([*COMMON, "--optimizer", "adamw8bit", "--sharding", "zero3", *out]))
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "deepspeed" else real(name, *a))
    with pytest.raises(CoMoViError, match=r"--sharding zero3 needs DeepSpeed: pip install --no-build-isolation"):
        make_config(parse_args([*COMMON, "--sharding", "zero3", *out]))


def test_shipped_accelerate_configs_choose_the_sharding():
    """What ``accelerate launch --config_file`` puts in the environment for each shipped config (accelerate's own
    argument handling), and the --sharding comovi_core.training.train makes of it."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

    from comovi_core.training.sharding import launcher_sharding

    chosen = {}
    for path in sorted(CONFIGS.glob("*.yaml")):
        args = launch_command_parser().parse_args(["--config_file", str(path), "-m", "comovi_core.train"])
        args, _, _ = _validate_launch_command(args)
        args.deepspeed_fields_from_accelerate_config = ""  # set by accelerate's launch_command; informational
        env = prepare_deepspeed_cmd_env(args)[1] if args.use_deepspeed else prepare_multi_gpu_env(args)
        chosen[path.name] = (launcher_sharding(env), int(env.get("WORLD_SIZE", args.num_processes)))
    assert chosen == {
        "fsdp2_8_gpus.yaml": ("fsdp2", 8),
        "one_node_8_gpus.yaml": (None, 8),  # --sharding decides (default ddp)
        "two_nodes_16_gpus.yaml": (None, 16),
        "zero2_8_gpus.yaml": ("zero2", 8),
        "zero3_8_gpus.yaml": ("zero3", 8),
        "zero3_offload_8_gpus.yaml": ("zero3_offload", 8),
    }


def test_launcher_and_flag_disagreeing_or_foreign_deepspeed_setups_are_refused(tmp_path, monkeypatch):
    out = ["--out", str(tmp_path / "r")]
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", "3")
    assert make_config(parse_args([*COMMON, *out])).sharding == "zero3"
    with pytest.raises(CoMoViError, match="--sharding fsdp2 and the accelerate config's zero3 disagree"):
        make_config(parse_args([*COMMON, "--sharding", "fsdp2", *out]))
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", "1")
    with pytest.raises(CoMoViError, match="ZeRO stage 1 with optimizer offload none: .* zero_stage 2 or 3"):
        make_config(parse_args([*COMMON, *out]))
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_CONFIG_FILE", "ds.json")
    with pytest.raises(CoMoViError, match=r"names a DeepSpeed config file \(ds.json\).* give zero_stage"):
        make_config(parse_args([*COMMON, *out]))
