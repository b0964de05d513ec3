"""Training runs as a user starts them (``python -m comovi_core.train``, or ``torchrun`` for several processes)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_train(
    args: list[str], out: Path, processes: int = 1, accelerate_config: Path | None = None
) -> subprocess.CompletedProcess:
    """Run ``python -m comovi_core.train`` with ``args`` into ``out`` on ``processes`` CPU processes (gloo).

    Fails loudly.
    ``accelerate_config``: started by ``accelerate launch --config_file`` (its process count set to ``processes``)."""
    if accelerate_config is not None:
        launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(accelerate_config)]
        launch += ["--num_processes", str(processes), "--main_process_port", str(free_port())]
    elif processes > 1:
        launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes), "--master_port"]
        launch += [str(free_port())]
    else:
        launch = [sys.executable]
    done = subprocess.run(
        [*launch, "-m", "comovi_core.train", *args, "--out", str(out)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def metrics_rows(run: Path) -> list[dict]:
    """The lines of a run's ``metrics.jsonl``, one dict per optimizer step."""
    return [json.loads(line) for line in (Path(run) / "metrics.jsonl").read_text().splitlines()]


def max_diff(a: dict, b: dict) -> float:
    """Largest absolute difference between two state dicts with the same keys."""
    assert a.keys() == b.keys()
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


def cut_after_step1(source: Path, target: Path) -> None:
    """A copy of the run ``source`` cut after step 1 (as a run killed after its first save)."""
    target.mkdir()
    shutil.copytree(source / "state_000001", target / "state_000001")
    for suffix in (".safetensors", ".json"):
        shutil.copy(source / f"step_000001{suffix}", target)
