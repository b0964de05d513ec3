"""Training: stages update exactly their parameters, the loss goes down, checkpoints load back; mixed precision
learns, a killed run resumes bit-identically, bad clips are refused up front, metrics are logged."""

from __future__ import annotations

import json
import math
import re
import shutil

import numpy as np
import pytest
import torch
from train_runs import run_train

from comovi_core.body.motion_file import save_motion
from comovi_core.body.smpl import load_body_model
from comovi_core.errors import CoMoViError
from comovi_core.files.video import mp4_writer
from comovi_core.inference.tiny import tiny_components
from comovi_core.model.config import get_config
from comovi_core.model.loading import load_model
from comovi_core.training.data import check_clips, load_clips, synthetic_clips
from comovi_core.training.step import drop_text, micro_batch_generator, sample_sigma, shifted_sigmas, training_step
from comovi_core.training.train import TrainConfig, load_training_components, main, train


@pytest.fixture(scope="module")
def body():
    return load_body_model(None)


pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")


def _snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _changed(before, model, prefix):
    after = model.state_dict()
    keys = [k for k in before if k.startswith(prefix)]
    return any(not torch.equal(before[k], after[k]) for k in keys)


def _setup(body):
    parts = tiny_components(0)
    clips = synthetic_clips(body, 1, 9, 64, 64, seed=0)
    return parts["transformer"], parts["vae"], parts["text_encoder"], clips


def _eval_loss(model, vae, body, clip, context, cfg) -> float:
    """The motion flow loss on 8 fixed (noise, timestep) draws: a deterministic yardstick."""
    generator = torch.Generator().manual_seed(123)
    with torch.no_grad():
        return float(
            np.mean([training_step(model, vae, body, clip, context, cfg, generator)["motion"].item() for _ in range(8)])
        )


def test_stage1_trains_only_the_motion_branch_and_learns(tmp_path, body):
    model, vae, text, clips = _setup(body)
    before = _snapshot(model)
    cfg = TrainConfig(
        preset="tiny",
        stage=1,
        steps=30,
        lr=3e-3,
        warmup=1,
        grad_accum=1,
        frames=9,
        height=64,
        width=64,
        save_every=100,
        log_every=100,
        gradient_checkpointing=False,
        precision="fp32",
    )
    context = text([clips[0].caption])
    start_loss = _eval_loss(model, vae, body, clips[0], context, cfg)
    train(cfg, model, clips, tmp_path, body=body, vae=vae, text_encoder=text)
    end_loss = _eval_loss(model.eval(), vae, body, clips[0], context, cfg)
    assert _changed(before, model, "motion.")
    for prefix in ("rgb.", "zero_linears.", "smpl_head."):
        assert not _changed(before, model, prefix), prefix
    assert json.loads((tmp_path / "summary.json").read_text())["steps"] == 30
    assert end_loss < 0.8 * start_loss, (start_loss, end_loss)


def test_stage2_freezes_rgb_and_checkpoint_loads_back(tmp_path, body):
    model, vae, text, clips = _setup(body)
    before = _snapshot(model)
    cfg = TrainConfig(
        preset="tiny",
        stage=2,
        steps=3,
        lr=1e-3,
        warmup=1,
        grad_accum=2,
        frames=9,
        height=64,
        width=64,
        save_every=2,
        log_every=1,
        gradient_checkpointing=True,
        precision="fp32",
    )
    train(cfg, model, clips, tmp_path, body=body, vae=vae, text_encoder=text)
    assert not _changed(before, model, "rgb.")
    for prefix in ("motion.", "zero_linears.", "smpl_head."):
        assert _changed(before, model, prefix), prefix
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "metrics.jsonl",
        "state_000002",
        "state_000003",
        "step_000002.json",
        "step_000002.safetensors",
        "step_000003.json",
        "step_000003.safetensors",
        "summary.json",
    ]
    meta = json.loads((tmp_path / "step_000003.json").read_text())
    assert meta["step"] == 3 and meta["train"]["stage"] == 2 and meta["config"]["num_layers"] == 2
    loaded, report = load_model(get_config("tiny"), tmp_path / "step_000003.safetensors", dtype=torch.float32)
    state = model.state_dict()
    assert all(torch.equal(v, state[k]) for k, v in loaded.state_dict().items()) and report.has_smpl_head


def test_clip_folders_and_cli_errors(tmp_path, body, caplog):
    clip = tmp_path / "data" / "clip_a"
    clip.mkdir(parents=True)
    synthetic = synthetic_clips(body, 1, 9, 64, 64)[0]
    for name, frames in (("rgb.mp4", synthetic.rgb), ("motion_map.mp4", synthetic.motion_map)):
        with mp4_writer(clip / name, 64, 64, 16) as send:
            send((frames.numpy() * 255).round().astype(np.uint8))
    (clip / "caption.txt").write_text("a person waves\n")
    save_motion(clip / "motion.npz", synthetic.motion)
    clips = load_clips(tmp_path / "data", 9)
    assert len(clips) == 1 and clips[0].caption == "a person waves" and clips[0].rgb.shape == (9, 64, 64, 3)
    assert clips[0].motion.num_frames == 9
    assert (
        main(["--preset", "tiny", "--data", str(tmp_path / "data"), "--steps", "2", "--out", str(tmp_path / "run")])
        == 0
    )
    assert (tmp_path / "run" / "step_000002.safetensors").is_file()
    (clip / "caption.txt").unlink()
    with pytest.raises(CoMoViError, match=r"missing \['caption.txt'\]"):
        load_clips(tmp_path / "data", 9)
    assert main(["--preset", "tiny", "--out", str(tmp_path / "x")]) == 2
    assert (
        "either --data FOLDER, --cache FOLDER [FOLDER ...] (python -m comovi_core.prepare) or --synthetic N"
        in caplog.text
    )
    assert main(["--preset", "tiny", "--synthetic", "1", "--stage", "3", "--out", str(tmp_path / "x")]) == 2
    assert "--stage must be 1 or 2" in caplog.text
    for argv, message in (
        (["--frames", "80"], r"4k\+1 .* got 80; try 77 or 81"),
        (["--steps", "-1"], "--steps must be at least 1, got -1"),
        (["--height", "0"], "multiples of 32, got 0x64"),
    ):
        assert main(["--preset", "tiny", "--synthetic", "1", *argv, "--out", str(tmp_path / "x")]) == 2
        assert re.search(message, caplog.text)
    assert main(["--preset", "tiny", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x")]) == 2
    assert "is not a folder" in caplog.text and not (tmp_path / "x").exists()


@pytest.mark.slow  # two gloo processes (about 20 s on 2 cores): the CI's second step (pytest -m slow)
def test_two_processes_equal_one_with_twice_the_accumulation(tmp_path):
    """Data parallel (torchrun, 2 CPU processes over gloo, --grad-accum 1) makes the same update as one process with
    --grad-accum 2: micro-batch i of a step draws the same clip, noise and timestep wherever it runs."""
    from safetensors.torch import load_file

    # Adam eps 1e-8, not the release's 1e-10: with 1e-10 a gradient element that is ~0 in one run and ~1e-12 in the
    # other (summation order) takes a full-size step in one of them; CI under load once measured 6e-5 that way.
    common = [
        "--preset",
        "tiny",
        "--synthetic",
        "2",
        "--stage",
        "2",
        "--steps",
        "2",
        "--adam-eps",
        "1e-8",
    ]
    run_train([*common, "--grad-accum", "1"], tmp_path / "ddp", processes=2)
    run_train([*common, "--grad-accum", "2"], tmp_path / "one")
    ddp, one = (json.loads((tmp_path / d / "summary.json").read_text()) for d in ("ddp", "one"))
    assert (ddp["processes"], one["processes"]) == (2, 1)
    assert ddp["first_loss"] == pytest.approx(one["first_loss"], rel=1e-6) and ddp["last_loss"] == pytest.approx(
        one["last_loss"], rel=1e-6
    )
    a, b = (load_file(str(tmp_path / d / "step_000002.safetensors")) for d in ("ddp", "one"))
    assert a.keys() == b.keys() and max(float((a[k] - b[k]).abs().max()) for k in a) < 2e-5  # measured 2.5e-6
    start = tiny_components(0)["transformer"].state_dict()
    assert any(not torch.equal(a[k], start[k]) for k in a if k.startswith("motion."))  # it did train


def test_bf16_precision_keeps_fp32_masters_so_every_trained_tensor_moves_at_lr_2e5(tmp_path, body):
    """The real path (``load_training_components`` gives the model in bf16, as ``load_model`` does for real presets;
    ``train`` makes the trained parameters fp32 masters and runs bf16 autocast): after 3 steps at the paper's lr 2e-5
    every trained tensor has moved, nearly every element (pure bf16 moved 12 % of elements: updates below half an
    ulp)."""
    cfg = TrainConfig(
        preset="tiny",
        stage=2,
        steps=3,
        lr=2e-5,
        warmup=1,
        grad_accum=1,
        frames=9,
        height=64,
        width=64,
        save_every=100,
        log_every=100,
        gradient_checkpointing=False,
        precision="bf16",
    )
    model, vae, text = load_training_components(cfg, [])
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    train(cfg, model, synthetic_clips(body, 2, 9, 64, 64), tmp_path, body=body, vae=vae, text_encoder=text)
    trained = ("motion.", "zero_linears.", "smpl_head.")
    params = dict(model.named_parameters())
    assert all(p.dtype == (torch.float32 if k.startswith(trained) else torch.bfloat16) for k, p in params.items())
    assert all(torch.equal(params[k], v) for k, v in before.items() if not k.startswith(trained))  # frozen RGB
    # the 3D head reads only the last layer's fusion: fusion.0 gets no gradient in any precision
    unused = {"smpl_head.fusion.0.weight", "smpl_head.fusion.0.bias"}
    moved = {k for k, v in before.items() if k.startswith(trained) and not torch.equal(params[k], v.float())}
    assert moved == {k for k in before if k.startswith(trained)} - unused
    changed = sum(int((params[k] != before[k].float()).sum()) for k in moved)
    assert changed / sum(before[k].numel() for k in moved) > 0.999  # measured 0.99998 (pure bf16: 0.116)
    saved = load_model(get_config("tiny"), tmp_path, dtype=torch.float32)[0].state_dict()  # checkpoint in bf16
    assert torch.equal(saved["motion.proj_out.weight"], params["motion.proj_out.weight"].bfloat16().float())


_RUN = [
    "--preset",
    "tiny",
    "--synthetic",
    "2",
    "--stage",
    "2",
    "--grad-accum",
    "2",
    "--warmup",
    "4",
    "--save-every",
    "2",
]


@pytest.fixture(scope="module")
def unbroken_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("unbroken")
    assert main([*_RUN, "--steps", "6", "--out", str(out)]) == 0
    return out


def test_killed_run_resumes_bit_identical_and_skips_temp_files(tmp_path, unbroken_run, caplog):
    """Steps 1-3 (killed after the step-3 save), then the same command with --steps 6: the default --resume latest
    continues from state_000003 and ends with every weight torch.equal to the unbroken 6-step run; warm-up goes on
    (lr of steps 4-6 as unbroken); debris of a save killed at step 4 is ignored by resume and load_model."""
    out = tmp_path / "run"
    assert main([*_RUN, "--steps", "3", "--out", str(out)]) == 0
    (out / ".step_000004.safetensors.x1y2z3.safetensors").write_bytes(b"\x08\x00half-written")
    (out / ".state_000004.partial").mkdir()
    (out / ".state_000004.partial" / "state.json").write_text("{")
    shutil.copy(out / "step_000003.safetensors", out / "step_000003.copy")  # to check it is not rewritten
    with open(out / "metrics.jsonl", "a") as fh:
        fh.write('{"step": 4, "loss": 0.2')  # the kill also cut a metrics line
    assert load_model(get_config("tiny"), out, dtype=torch.float32)[1].loaded  # the temp file is not read
    assert main([*_RUN, "--steps", "6", "--out", str(out)]) == 0
    assert "resumed from" in caplog.text and "state_000003" in caplog.text
    assert not list(out.glob(".st*"))  # the debris was removed
    assert json.loads((out / "summary.json").read_text())["resumed_from"] == 3
    for step in (2, 4, 6):
        a, b = (
            load_model(get_config("tiny"), d / f"step_{step:06d}.safetensors", dtype=torch.float32)[0].state_dict()
            for d in (unbroken_run, out)
        )
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), step  # max abs diff 0.0
    assert (out / "step_000003.safetensors").read_bytes() == (out / "step_000003.copy").read_bytes()
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    ref = [json.loads(line) for line in (unbroken_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert [r["lr"] for r in rows] == [r["lr"] for r in ref] == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3, 1e-3])
    assert [r["loss"] for r in rows] == [r["loss"] for r in ref]
    loaded = load_model(get_config("tiny"), out, dtype=torch.float32)[0].state_dict()  # the run folder: latest step
    final = load_model(get_config("tiny"), out / "step_000006.safetensors", dtype=torch.float32)[0].state_dict()
    assert all(torch.equal(loaded[k], final[k]) for k in final)
    assert main([*_RUN, "--steps", "6", "--resume", "none", "--out", str(out)]) == 2
    assert "already holds checkpoints" in caplog.text
    assert main([*_RUN, "--steps", "6", "--resume", str(out / "nowhere"), "--out", str(out)]) == 2
    assert "no resumable state there" in caplog.text


def test_older_states_are_pruned_and_checkpoints_stay(tmp_path, unbroken_run, caplog):
    """--keep-states (default 2): a real-size state is ~12 bytes per trained parameter (~73 GB for stage 2), so only
    the newest states stay once a new one is complete; every step_N checkpoint stays."""
    assert sorted(p.name for p in unbroken_run.glob("state_*")) == ["state_000004", "state_000006"]
    assert sorted(p.name for p in unbroken_run.glob("step_*.safetensors")) == [
        "step_000002.safetensors",
        "step_000004.safetensors",
        "step_000006.safetensors",
    ]
    assert main([*_RUN, "--steps", "1", "--keep-states", "-1", "--out", str(tmp_path / "x")]) == 2
    assert "--keep-states must be 0 (keep all) or more" in caplog.text and not (tmp_path / "x").exists()


def test_metrics_jsonl_has_every_loss_per_step(unbroken_run, caplog):
    rows = [json.loads(line) for line in (unbroken_run / "metrics.jsonl").read_text().splitlines()]
    keys = {
        "step",
        "loss",
        "loss_motion",
        "loss_video",
        "loss_smpl",
        "lr",
        "grad_norm",
        "samples_per_s",
        "tokens",
        "tokens_per_s",
    }
    assert [r["step"] for r in rows] == list(range(1, 7)) and all(set(r) == keys for r in rows)
    assert {r["tokens"] for r in rows} == {2 * 24}  # 2 micro-batches x 2 branches x 3 x (64/32)^2 latent patches
    assert all(math.isfinite(v) and v > 0 for r in rows for k, v in r.items())
    assert all(r["loss"] == pytest.approx(r["loss_motion"] + r["loss_video"] + r["loss_smpl"], rel=1e-5) for r in rows)
    assert rows[-1]["loss_smpl"] < rows[0]["loss_smpl"]  # lr 1e-3 on the tiny 3D head
    from accelerate.utils import is_tensorboard_available

    if not is_tensorboard_available():
        assert main([*_RUN, "--steps", "1", "--tensorboard", "--out", str(unbroken_run / "tb")]) == 2
        assert "pip install tensorboard" in caplog.text
    else:
        assert main([*_RUN, "--steps", "1", "--tensorboard", "--out", str(unbroken_run / "tb")]) == 0
        assert list((unbroken_run / "tb" / "tensorboard").rglob("events.out.tfevents.*"))


def test_timestep_sampling_and_text_dropout():
    cfg = TrainConfig()
    assert (cfg.timestep_sampling, cfg.shift, cfg.adam_eps, cfg.text_dropout, cfg.precision) == (
        "uniform",
        5.0,
        1e-10,
        0.0,
        "bf16",
    )
    table = shifted_sigmas(5.0)
    u = torch.arange(1000, 0, -1) / 1000
    assert torch.allclose(table, 5 * u / (1 + 4 * u))  # the shift-5 schedule: sigma(1)=1 ... sigma(0.001)=0.005
    draws = torch.cat([sample_sigma(cfg, micro_batch_generator(0, s, 0)) for s in range(4000)])
    assert torch.isin(draws, table).all() and abs(float(draws.mean()) - float(table.mean())) < 0.01  # mean 0.745
    normal = torch.cat(
        [
            sample_sigma(TrainConfig(timestep_sampling="logit_normal"), micro_batch_generator(0, s, 0))
            for s in range(4000)
        ]
    )
    assert abs(float(normal.mean()) - 0.5) < 0.01 and not torch.isin(normal, table).any()
    drops = [drop_text(TrainConfig(text_dropout=0.3), micro_batch_generator(0, s, 0)) for s in range(4000)]
    assert abs(sum(drops) / 4000 - 0.3) < 0.03
    generator = micro_batch_generator(0, 1, 0)
    assert not any(drop_text(cfg, generator) for _ in range(100))
    assert torch.equal(generator.get_state(), micro_batch_generator(0, 1, 0).get_state())  # no draw without dropout
    assert main(["--preset", "tiny", "--synthetic", "1", "--text-dropout", "1.5", "--out", "unused"]) == 2


def _write_clip(folder, clip, rgb_frames=None, map_frames=None, motion=None, size=None):
    """A clip folder from a synthetic clip, with its parts optionally cut or resized to make it bad."""
    folder.mkdir(parents=True)
    for name, frames in (
        ("rgb.mp4", rgb_frames if rgb_frames is not None else clip.rgb),
        ("motion_map.mp4", map_frames if map_frames is not None else clip.motion_map),
    ):
        pixels = (frames.numpy() * 255).round().astype(np.uint8)
        if size is not None and name == "rgb.mp4":
            pixels = np.zeros((len(pixels), *size, 3), np.uint8)
        with mp4_writer(folder / name, pixels.shape[1], pixels.shape[2], 16) as send:
            send(pixels)
    (folder / "caption.txt").write_text("a person waves\n")
    save_motion(folder / "motion.npz", motion or clip.motion)


def test_bad_clips_are_refused_before_training_with_the_clip_and_the_fix(tmp_path, body, caplog):
    from comovi_core.body.motion_file import SMPLMotion
    from comovi_core.errors import TrainingDataError

    clip = synthetic_clips(body, 1, 9, 64, 64)[0]
    m = clip.motion
    short = SMPLMotion(m.global_orient[:7], m.body_pose[:7], m.betas, m.transl[:7], m.fps, m.camera)
    cases = {  # clip name -> (how it is broken, the message that must name it)
        "short_smpl": (dict(motion=short), r"short_smpl: motion\.npz has 7 poses but rgb\.mp4 has 9 frames"),
        "wide": (dict(size=(64, 96)), r"wide: rgb\.mp4 is 64x96 \(HxW\) but training runs at 64x64 .*resize and crop"),
        "cut_map": (
            dict(map_frames=clip.motion_map[:5]),
            r"cut_map: motion_map\.mp4 has 5 frames but rgb\.mp4 has 9: they must match",
        ),
    }
    for name, (how, message) in cases.items():
        data = tmp_path / name
        _write_clip(data / "clip_good", clip)
        _write_clip(data / name, clip, **how)
        with pytest.raises(TrainingDataError, match=message):
            check_clips(data, 9, 64, 64)
        assert main(["--preset", "tiny", "--data", str(data), "--stage", "2", "--out", str(tmp_path / "out")]) == 2
        assert re.search(message, caplog.text) and not (tmp_path / "out").exists()
    data = tmp_path / "short_smpl"  # too short for --frames: every problem of every clip in one message
    with pytest.raises(
        TrainingDataError,
        match=r"^3 problem\(s\) .*\n.*clip_good: rgb\.mp4 has 9 frames, fewer than "
        r"--frames 13: lower --frames",
    ):
        check_clips(data, 13, 64, 64)
    shutil.rmtree(data / "short_smpl")
    assert [p.name for p in check_clips(data, 9, 64, 64)] == ["clip_good"]
