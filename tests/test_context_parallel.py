"""Context parallelism (generate --context-parallel under torchrun, 2 CPU processes over gloo): each process holds
half the tokens of both branches, and the run's outputs equal a one-process run's; what cannot run split is
refused before any work."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from train_runs import free_port

from comovi_core.errors import CoMoViError
from comovi_core.files.video import read_video
from comovi_core.inference.generate import main
from comovi_core.inference.tiny import tiny_transformer
from comovi_core.model.parallel import check_split, enable_context_parallel

TINY = ["-m", "comovi_core.generate", "--preset", "tiny", "--steps", "4"]


@pytest.mark.slow  # two gloo processes (about 20 s on 2 cores): the CI's second step (pytest -m slow)
def test_two_processes_generate_what_one_process_generates(tmp_path):
    """The same threads per process in both runs (sums in the same order): measured byte-identical videos and equal
    motion; the check allows float rounding (CI with 2 threads per process once gave videos 1 byte apart)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    split = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
         *TINY, "--context-parallel", "ulysses", "--out", str(tmp_path / "cp")],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert split.returncode == 0, split.stderr[-3000:]
    one = subprocess.run(
        [sys.executable, *TINY, "--out", str(tmp_path / "one")], capture_output=True, timeout=300, env=env
    )
    assert one.returncode == 0
    for name in ("rgb.mp4", "motion_map.mp4"):
        a, b = (read_video(tmp_path / d / name).astype(np.int16) for d in ("cp", "one"))
        assert a.shape == b.shape and np.abs(a - b).max() <= 2 and np.abs(a - b).mean() < 0.05, name
    a, b = (np.load(tmp_path / d / "motion.npz") for d in ("cp", "one"))
    assert a.files == b.files
    for k in a.files:
        same = np.allclose(a[k], b[k], atol=1e-5) if a[k].dtype.kind == "f" else np.array_equal(a[k], b[k])
        assert same, k
    meta = json.loads((tmp_path / "cp" / "meta.json").read_text())
    assert meta["context_parallel"] == {"processes": 2, "mode": "ulysses"}
    assert json.loads((tmp_path / "one" / "meta.json").read_text())["context_parallel"] is None


def test_what_cannot_run_split_is_refused_with_the_fix(tmp_path, caplog):
    model = tiny_transformer(0)
    heads = model.comovi_config.num_attention_heads
    check_split(model, (1, 48, 3, 4, 8), 2)  # 3 x 2 x 4 = 24 tokens, even
    with pytest.raises(CoMoViError, match="15 tokens per branch do not split over 2 processes"):
        check_split(model, (1, 48, 3, 2, 10), 2)
    with pytest.raises(CoMoViError, match=f"ulysses splits the {heads} attention heads over {heads + 1} processes"):
        check_split(model, (1, 48, heads + 1, 2, 2), heads + 1)
    with pytest.raises(CoMoViError, match="ring attention needs a GPU attention backend"):
        enable_context_parallel(model, 2, "ring")
    out = str(tmp_path / "x")
    assert main([*TINY[2:], "--context-parallel", "ulysses", "--out", out]) == 2  # not launched by torchrun
    assert "launch with torchrun --nproc_per_node N" in caplog.text
    assert main([*TINY[2:], "--context-parallel", "ulysses", "--block-swap", "1", "--out", out]) == 2
    assert "--context-parallel does not combine with --block-swap" in caplog.text
    assert not (tmp_path / "x").exists()
