"""--optimizer adamw8bit (bitsandbytes): 8-bit moments that learn like AdamW, in a state a third the size, that
resumes bit-identically; refused where it cannot work."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file
from train_runs import metrics_rows

from comovi_core.body.smpl import load_body_model
from comovi_core.errors import CoMoViError
from comovi_core.training.data import synthetic_clips
from comovi_core.training.train import TrainConfig, load_training_components, main, make_config, parse_args, train

pytest.importorskip("bitsandbytes", reason="the dev extra installs bitsandbytes")  # CI installs it: never skipped there
RUN = ["--preset", "tiny", "--synthetic", "2", "--stage", "2", "--grad-accum", "2", "--save-every", "2"]


pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")


def test_8bit_moments_learn_like_adamw_in_a_third_of_the_state_and_resume_bit_identical(tmp_path, caplog):
    assert main([*RUN, "--optimizer", "adamw8bit", "--steps", "4", "--out", str(tmp_path / "8bit")]) == 0
    assert main([*RUN, "--steps", "4", "--out", str(tmp_path / "adamw")]) == 0
    eight, full = metrics_rows(tmp_path / "8bit"), metrics_rows(tmp_path / "adamw")
    assert eight[0]["loss"] == full[0]["loss"]  # the same first batch
    assert [r["loss"] for r in eight] == pytest.approx([r["loss"] for r in full], rel=1e-3)  # measured 2.3e-6 apart
    state = load_file(str(tmp_path / "8bit" / "state_000004" / "optimizer.safetensors"))
    masters = load_file(str(tmp_path / "8bit" / "state_000004" / "trainable.safetensors"))
    quantised = {k.split("/")[0] for k, v in state.items() if k.endswith("/state1") and v.dtype == torch.uint8}
    big = {k for k, v in masters.items() if v.numel() >= 4096}  # bitsandbytes' min_8bit_size
    assert quantised == big - {"smpl_head.fusion.0.weight"}  # no gradient ever (test_train), so no state
    sizes = [(tmp_path / d / "state_000004" / "optimizer.safetensors").stat().st_size for d in ("8bit", "adamw")]
    assert sizes[0] < 0.35 * sizes[1]  # measured 1.20 MB vs 3.95 MB (tiny: many tensors below 4096 stay fp32)
    # killed after step 2, started again: the quantised moments and bitsandbytes' step counts come back exactly
    resumed = tmp_path / "resumed"
    assert main([*RUN, "--optimizer", "adamw8bit", "--steps", "2", "--out", str(resumed)]) == 0
    assert main([*RUN, "--optimizer", "adamw8bit", "--steps", "4", "--out", str(resumed)]) == 0
    assert "resumed from" in caplog.text
    a, b = (load_file(str(d / "step_000004.safetensors")) for d in (tmp_path / "8bit", resumed))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert main([*RUN, "--steps", "6", "--out", str(resumed)]) == 2  # the default adamw cannot take 8-bit state
    assert "holds adamw8bit state, this run uses --optimizer adamw" in caplog.text


def test_8bit_moments_with_fp32_masters_move_every_trained_tensor_at_lr_2e5(tmp_path):
    body = load_body_model(None)
    cfg = TrainConfig(
        preset="tiny", stage=2, steps=3, lr=2e-5, warmup=1, grad_accum=1, frames=9, height=64, width=64,
        save_every=100, gradient_checkpointing=False, precision="bf16", optimizer="adamw8bit",
    )  # fmt: skip
    model, vae, text = load_training_components(cfg, [])
    before = {k: v.detach().float().clone() for k, v in model.named_parameters()}
    train(cfg, model, synthetic_clips(body, 2, 9, 64, 64), tmp_path, body=body, vae=vae, text_encoder=text)
    trained = ("motion.", "zero_linears.", "smpl_head.")
    params = dict(model.named_parameters())
    unused = {"smpl_head.fusion.0.weight", "smpl_head.fusion.0.bias"}  # no gradient in any precision (test_train)
    moved = {k for k, v in before.items() if k.startswith(trained) and not torch.equal(params[k], v)}
    assert moved == {k for k in before if k.startswith(trained)} - unused
    changed = sum(int((params[k] != before[k]).sum()) for k in moved)
    assert changed / sum(before[k].numel() for k in moved) > 0.99  # measured 0.99964


def test_8bit_is_refused_where_it_cannot_work(tmp_path):
    with pytest.raises(CoMoViError, match="does not take sharded parameters: use it with --sharding ddp"):
        make_config(parse_args([*RUN, "--optimizer", "adamw8bit", "--sharding", "fsdp2", "--out", str(tmp_path)]))
