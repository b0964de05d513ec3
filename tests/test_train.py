"""Training: stages update exactly their parameters, the loss goes down, checkpoints load back."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
import torch

from comovi_core.body.motion_file import save_motion
from comovi_core.body.smpl import load_body_model
from comovi_core.errors import CoMoViError
from comovi_core.model.config import get_config
from comovi_core.model.loading import load_model
from comovi_core.tiny import tiny_components
from comovi_core.train import TrainConfig, main, train, training_step
from comovi_core.train_data import check_clips, load_clips, synthetic_clips
from comovi_core.video import mp4_writer


@pytest.fixture(scope="module")
def body():
    return load_body_model(None)


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
        return float(np.mean([training_step(model, vae, body, clip, context, cfg, generator)["motion"].item() for _ in range(8)]))


def test_stage1_trains_only_the_motion_branch_and_learns(tmp_path, body):
    model, vae, text, clips = _setup(body)
    before = _snapshot(model)
    cfg = TrainConfig(preset="tiny", stage=1, steps=30, lr=3e-3, warmup=1, grad_accum=1, frames=9, height=64, width=64,
                      save_every=100, log_every=100, gradient_checkpointing=False)
    context = text([clips[0].caption])
    start_loss = _eval_loss(model, vae, body, clips[0], context, cfg)
    train(cfg, model, vae, text, clips, tmp_path, body)
    end_loss = _eval_loss(model.eval(), vae, body, clips[0], context, cfg)
    assert _changed(before, model, "motion.")
    for prefix in ("rgb.", "zero_linears.", "smpl_head."):
        assert not _changed(before, model, prefix), prefix
    assert json.loads((tmp_path / "summary.json").read_text())["steps"] == 30
    assert end_loss < 0.8 * start_loss, (start_loss, end_loss)


def test_stage2_freezes_rgb_and_checkpoint_loads_back(tmp_path, body):
    model, vae, text, clips = _setup(body)
    before = _snapshot(model)
    cfg = TrainConfig(preset="tiny", stage=2, steps=3, lr=1e-3, warmup=1, grad_accum=2, frames=9, height=64, width=64,
                      save_every=2, log_every=1, gradient_checkpointing=True)
    train(cfg, model, vae, text, clips, tmp_path, body)
    assert not _changed(before, model, "rgb.")
    for prefix in ("motion.", "zero_linears.", "smpl_head."):
        assert _changed(before, model, prefix), prefix
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_000002.json", "step_000002.safetensors", "step_000003.json",
                                                          "step_000003.safetensors", "summary.json"]
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
    assert main(["--preset", "tiny", "--data", str(tmp_path / "data"), "--steps", "2", "--out", str(tmp_path / "run")]) == 0
    assert (tmp_path / "run" / "step_000002.safetensors").is_file()
    (clip / "caption.txt").unlink()
    with pytest.raises(CoMoViError, match=r"missing \['caption.txt'\]"):
        load_clips(tmp_path / "data", 9)
    assert main(["--preset", "tiny", "--out", str(tmp_path / "x")]) == 2
    assert "either --data FOLDER or --synthetic N" in caplog.text
    assert main(["--preset", "tiny", "--synthetic", "1", "--stage", "3", "--out", str(tmp_path / "x")]) == 2
    assert "--stage must be 1 or 2" in caplog.text
    for argv, message in ((["--frames", "80"], r"4k\+1 .* got 80; try 77 or 81"), (["--steps", "-1"], "--steps must be at least 1, got -1"),
                          (["--height", "0"], "multiples of 32, got 0x64")):
        assert main(["--preset", "tiny", "--synthetic", "1", *argv, "--out", str(tmp_path / "x")]) == 2
        assert re.search(message, caplog.text)
    assert main(["--preset", "tiny", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x")]) == 2
    assert "is not a folder" in caplog.text and not (tmp_path / "x").exists()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_processes_equal_one_with_twice_the_accumulation(tmp_path):
    """Data parallel (torchrun, 2 CPU processes over gloo, --grad-accum 1) makes the same update as one process with
    --grad-accum 2: micro-batch i of a step draws the same clip, noise and timestep wherever it runs."""
    import subprocess
    import sys

    from safetensors.torch import load_file

    common = ["-m", "comovi_core.train", "--preset", "tiny", "--synthetic", "2", "--stage", "2", "--steps", "2"]
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
                    *common, "--grad-accum", "1", "--out", str(tmp_path / "ddp")], check=True, capture_output=True, timeout=300)
    subprocess.run([sys.executable, *common, "--grad-accum", "2", "--out", str(tmp_path / "one")], check=True,
                   capture_output=True, timeout=300)
    ddp, one = (json.loads((tmp_path / d / "summary.json").read_text()) for d in ("ddp", "one"))
    assert (ddp["processes"], one["processes"]) == (2, 1)
    assert ddp["first_loss"] == pytest.approx(one["first_loss"], rel=1e-6) and ddp["last_loss"] == pytest.approx(one["last_loss"], rel=1e-6)
    a, b = (load_file(str(tmp_path / d / "step_000002.safetensors")) for d in ("ddp", "one"))
    assert a.keys() == b.keys() and max(float((a[k] - b[k]).abs().max()) for k in a) < 2e-5  # measured 2.5e-6
    start = tiny_components(0)["transformer"].state_dict()
    assert any(not torch.equal(a[k], start[k]) for k in a if k.startswith("motion."))  # it did train


def _write_clip(folder, clip, rgb_frames=None, map_frames=None, motion=None, size=None):
    """A clip folder from a synthetic clip, with its parts optionally cut or resized to make it bad."""
    folder.mkdir(parents=True)
    for name, frames in (("rgb.mp4", rgb_frames if rgb_frames is not None else clip.rgb),
                         ("motion_map.mp4", map_frames if map_frames is not None else clip.motion_map)):
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
        "cut_map": (dict(map_frames=clip.motion_map[:5]),
                    r"cut_map: motion_map\.mp4 has 5 frames but rgb\.mp4 has 9: they must match"),
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
    with pytest.raises(TrainingDataError, match=r"^3 problem\(s\) .*\n.*clip_good: rgb\.mp4 has 9 frames, fewer than "
                                                r"--frames 13: lower --frames"):
        check_clips(data, 13, 64, 64)
    shutil.rmtree(data / "short_smpl")
    assert [p.name for p in check_clips(data, 9, 64, 64)] == ["clip_good"]
