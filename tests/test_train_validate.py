"""Validation during training (--validate-every): losses of fixed draws on the first clip, logged at the right
steps and computed with that step's weights; a generated sample saved (latents, poses, videos); the updates are
the same as without validation."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file
from train_runs import metrics_rows

from comovi_core.body.smpl import load_body_model
from comovi_core.codecs.loading import load_codecs
from comovi_core.files.video import probe_video
from comovi_core.inference.pipeline import start_pose_6d
from comovi_core.inference.sampling import sample
from comovi_core.model.loading import load_model
from comovi_core.training.data import ClipData, synthetic_clips
from comovi_core.training.step import latent_training_step
from comovi_core.training.train import main, make_config, parse_args
from comovi_core.training.validate import VALIDATION_DRAWS, VALIDATION_GUIDANCE, VALIDATION_SEED_OFFSET

RUN = ["--preset", "tiny", "--synthetic", "2", "--stage", "2", "--steps", "4", "--save-every", "2"]
VALIDATE = ["--validate-every", "2", "--validate-steps", "3"]


pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("validate")
    assert main([*RUN, *VALIDATE, "--out", str(root / "val")]) == 0
    assert main([*RUN, "--out", str(root / "plain")]) == 0
    return root


def test_validation_changes_no_update_and_logs_at_its_steps(runs):
    for step in (2, 4):
        a, b = (load_file(str(runs / d / f"step_{step:06d}.safetensors")) for d in ("val", "plain"))
        assert all(torch.equal(a[k], b[k]) for k in a), step  # bit-identical
    rows, plain = metrics_rows(runs / "val"), metrics_rows(runs / "plain")
    assert [r["loss"] for r in rows] == [r["loss"] for r in plain]
    names = ("val_loss_motion", "val_loss_video", "val_loss_smpl")
    assert [[n in r for n in names] for r in rows] == [[False] * 3, [True] * 3, [False] * 3, [True] * 3]
    assert not any(k.startswith("val_") for r in plain for k in r)


def test_validation_losses_and_sample_come_from_that_steps_weights(runs):
    cfg = make_config(parse_args([*RUN, *VALIDATE, "--out", "x"]))
    body = load_body_model(None)
    vae, text = load_codecs("tiny", None, seed=cfg.seed)
    data = ClipData(synthetic_clips(body, 2, cfg.frames, cfg.height, cfg.width, cfg.seed), vae, text, False)
    first = data.read(0, 0, torch.device("cpu"))
    rows = {r["step"]: r for r in metrics_rows(runs / "val")}
    for step in (2, 4):
        model = load_model(None, runs / "val" / f"step_{step:06d}.safetensors", dtype=torch.float32)[0]
        generator = torch.Generator().manual_seed(cfg.seed + VALIDATION_SEED_OFFSET)
        with torch.no_grad():
            draws = [
                latent_training_step(
                    model, body, first.x0_rgb, first.x0_motion, first.motion, first.context, cfg, generator
                )
                for _ in range(VALIDATION_DRAWS)
            ]
        for name in ("motion", "video", "smpl"):
            expected = sum(float(d[name]) for d in draws) / VALIDATION_DRAWS
            assert rows[step][f"val_loss_{name}"] == pytest.approx(expected, rel=1e-5), (step, name)
    # the step-4 sample: the sampler from the first clip's start frames, prompt and start pose, fixed seed
    saved = load_file(str(runs / "val" / "validation" / "step_000004.safetensors"))
    with torch.no_grad():
        direct = sample(
            model,
            first.x0_rgb[:, :, :1],
            first.x0_motion[:, :, :1],
            first.x0_rgb.shape[2],
            first.context,
            negative_prompt_embeds=data.empty_context(torch.device("cpu")),
            start_pose_6d=start_pose_6d(first.motion),
            steps=3,
            guidance=VALIDATION_GUIDANCE,
            shift=cfg.shift,
            generator=torch.Generator().manual_seed(cfg.seed + VALIDATION_SEED_OFFSET),
        )
    assert saved.keys() == {"rgb", "motion_map", "smpl_6d"}
    for key, value in (("rgb", direct.rgb), ("motion_map", direct.motion), ("smpl_6d", direct.smpl_6d)):
        assert torch.allclose(saved[key], value, atol=1e-6), key  # measured: equal
    assert torch.equal(saved["rgb"][:, :, :1], first.x0_rgb[:, :, :1])  # frame 0 is the clip's start frame
    for name in ("rgb", "motion_map"):
        assert probe_video(runs / "val" / "validation" / f"step_000004_{name}.mp4") == (9, 64, 64)


def test_a_cache_run_validates_on_its_first_clip(tmp_path):
    from comovi_core.training.prepare import main as prepare_main

    assert (
        prepare_main(
            [
                "--preset",
                "tiny",
                "--synthetic",
                "2",
                "--data",
                str(tmp_path / "clips"),
                "--out",
                str(tmp_path / "cache"),
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "--preset",
                "tiny",
                "--cache",
                str(tmp_path / "cache"),
                "--stage",
                "1",
                "--steps",
                "2",
                "--validate-every",
                "2",
                "--validate-steps",
                "2",
                "--out",
                str(tmp_path / "run"),
            ]
        )
        == 0
    )
    row = metrics_rows(tmp_path / "run")[-1]
    assert row["step"] == 2 and row["val_loss_motion"] > 0 and "val_loss_smpl" not in row  # stage 1: motion only
    saved = load_file(str(tmp_path / "run" / "validation" / "step_000002.safetensors"))
    assert saved["rgb"].shape == saved["motion_map"].shape == (1, 48, 3, 4, 4)
    assert saved["smpl_6d"].shape == (1, 8, 144)  # the 3D head runs (untrained in stage 1) from the cached start pose
    assert probe_video(tmp_path / "run" / "validation" / "step_000002_motion_map.mp4") == (9, 64, 64)
