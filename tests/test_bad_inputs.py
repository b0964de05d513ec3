"""Issue 11: every bad input is refused up front with a CoMoViError that names the problem and the fix (exit 2 for
the CLIs), before any work, and leaves nothing new on disk."""

from __future__ import annotations

import re

import pytest

import comovi_core.train
from comovi_core.train import main as train_main


def _files(folder) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


@pytest.fixture
def no_work(monkeypatch):
    """Any model, body or data loading fails the test: a refusal must come first."""
    def work(*_, **__):
        pytest.fail("work started before the bad input was refused")

    for name in ("load_body_model", "load_components", "load_training_model"):
        monkeypatch.setattr(comovi_core.train, name, work)


@pytest.mark.parametrize("argv, message", [
    (["--steps", "-1"], "--steps must be at least 1, got -1"),
    (["--steps", "0"], "--steps must be at least 1, got 0"),
    (["--frames", "80"], r"4k\+1 .* got 80; try 77 or 81"),
    (["--frames", "3"], r"4k\+1 and at least 5 .* got 3; try 5"),
    (["--grad-accum", "0"], "--grad-accum must be at least 1, got 0"),
    (["--lr", "-1"], r"--lr must be a number above 0 \(e.g. 2e-5\), got -1"),
    (["--lr", "0"], "--lr must be a number above 0"),
    (["--lr", "nan"], "--lr must be a number above 0 .*got nan"),
    (["--clip", "0"], "--clip must be a number above 0 .*1e9 does not clip"),
    (["--adam-eps=-1e-8"], "--adam-eps must be a number above 0"),
    (["--shift", "0"], "--shift must be a number above 0"),
    (["--warmup", "-1"], r"--warmup must be 0 \(no warm-up\) or more, got -1"),
    (["--weight-decay", "-0.1"], r"--weight-decay must be 0 \(no decay\) or more"),
    (["--lora", "-4"], r"--lora must be 0 \(no LoRA; else a rank such as 64\) or more, got -4"),
    (["--synthetic", "-1"], "--synthetic is a number of clips, got -1"),
])
def test_train_refuses_bad_numbers_before_work(tmp_path, caplog, no_work, argv, message):
    synthetic = [] if "--synthetic" in argv else ["--synthetic", "1"]
    assert train_main(["--preset", "tiny", *synthetic, *argv, "--out", str(tmp_path / "run")]) == 2
    assert re.search(message, caplog.text)
    assert _files(tmp_path) == []


def test_train_refuses_an_out_that_is_a_file_or_under_one(tmp_path, caplog, no_work):
    (tmp_path / "file").write_text("x")
    assert train_main(["--preset", "tiny", "--synthetic", "1", "--out", str(tmp_path / "file")]) == 2
    assert "--out run folder" in caplog.text and "is a file, not a folder" in caplog.text
    assert train_main(["--preset", "tiny", "--synthetic", "1", "--out", str(tmp_path / "file" / "run")]) == 2
    assert "lies under" in caplog.text and "which is a file" in caplog.text
    assert _files(tmp_path) == ["file"] and (tmp_path / "file").read_text() == "x"
