"""Issue 11: every bad input is refused up front with a CoMoViError that names the problem and the fix (exit 2 for
the CLIs), before any work, and leaves nothing new on disk."""

from __future__ import annotations

import re

import pytest

import comovi_core.training.train
from comovi_core.training.train import main as train_main


def _files(folder) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


@pytest.fixture
def no_work(monkeypatch):
    """Any model, body or data loading fails the test: a refusal must come first."""

    def work(*_, **__):
        pytest.fail("work started before the bad input was refused")

    for name in ("load_body_model", "load_training_components", "load_training_model"):
        monkeypatch.setattr(comovi_core.training.train, name, work)


@pytest.mark.parametrize(
    "argv, message",
    [
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
    ],
)
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


@pytest.fixture
def bad_safetensors(tmp_path):
    """A safetensors file cut in half, 64 bytes of junk and an empty file, in tmp_path/bad."""
    import torch
    from safetensors.torch import save_file

    folder = tmp_path / "bad"
    folder.mkdir()
    save_file({"x": torch.zeros(1000)}, str(folder / "good.safetensors"))
    data = (folder / "good.safetensors").read_bytes()
    (folder / "cut.safetensors").write_bytes(data[: len(data) // 2])
    (folder / "junk.safetensors").write_bytes(b"\xff" * 64)
    (folder / "empty.safetensors").write_bytes(b"")
    return [folder / f"{name}.safetensors" for name in ("cut", "junk", "empty")]


def test_inspect_and_train_init_refuse_cut_or_foreign_safetensors(tmp_path, caplog, no_work, bad_safetensors):
    from comovi_core.model.inspect import main as checkpoint_main

    before = _files(tmp_path)
    for path in bad_safetensors:
        caplog.clear()
        assert checkpoint_main(["inspect", str(path)]) == 2
        assert caplog.text.count(str(path)) == 1  # the path once, not "X: X is ..."
        assert f"{path} is incomplete or not a safetensors file" in caplog.text and "download" in caplog.text
        caplog.clear()
        assert (
            train_main(["--preset", "tiny", "--synthetic", "1", "--init", str(path), "--out", str(tmp_path / "r")]) == 2
        )
        assert (
            f"{path} is incomplete or not a safetensors file" in caplog.text
            and "download or save it again" in caplog.text
        )
    assert _files(tmp_path) == before


def test_every_safetensors_reader_maps_a_cut_file_to_one_error(bad_safetensors):
    """The shared helper (weights.checked_safe_open) behind load_model, the VAE, LoRA, training states and caches."""
    from comovi_core.errors import CoMoViError
    from comovi_core.files.weights import read_safetensors
    from comovi_core.model.lora import read_lora
    from comovi_core.training.cache_write import shard_meta

    for path in bad_safetensors:
        with pytest.raises(CoMoViError, match=f"{re.escape(str(path))} is incomplete or not a safetensors file"):
            read_safetensors(path)
        with pytest.raises(CoMoViError, match="is incomplete or not a safetensors file"):
            read_lora(path)
        with pytest.raises(
            CoMoViError, match="is incomplete or not a safetensors file .*run the prepare command again"
        ):
            shard_meta(path)


def _cut(path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_resume_from_a_cut_training_state_is_refused(tmp_path, caplog, fresh_accelerate_state):
    out = tmp_path / "run"
    argv = [
        "--preset",
        "tiny",
        "--synthetic",
        "1",
        "--frames",
        "5",
        "--height",
        "32",
        "--width",
        "32",
        "--out",
        str(out),
    ]
    assert train_main([*argv, "--steps", "1"]) == 0
    _cut(out / "state_000001" / "optimizer.safetensors")
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    assert train_main([*argv, "--steps", "2"]) == 2
    assert "state_000001/optimizer.safetensors is incomplete or not a safetensors file" in caplog.text
    assert "--resume none" in caplog.text
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before  # nothing new, nothing rewritten


def test_train_refuses_a_cache_with_a_cut_shard_before_work(tmp_path, caplog, fresh_accelerate_state, monkeypatch):
    from comovi_core.training.prepare import main as prepare_main

    cache = tmp_path / "cache"
    prepare = [
        "--preset",
        "tiny",
        "--synthetic",
        "2",
        "--data",
        str(tmp_path / "clips"),
        "--frames",
        "5",
        "--height",
        "32",
        "--width",
        "32",
        "--shard-size",
        "1",
        "--out",
        str(cache),
    ]
    assert prepare_main(prepare) == 0
    _cut(cache / "shard_000001.safetensors")
    before = _files(tmp_path)
    for name in ("load_body_model", "load_training_model"):
        monkeypatch.setattr(comovi_core.training.train, name, lambda *_, **__: pytest.fail("work started"))
    assert train_main(["--preset", "tiny", "--cache", str(cache), "--steps", "1", "--out", str(tmp_path / "r")]) == 2
    assert "shard_000001.safetensors is incomplete or not a safetensors file" in caplog.text
    assert "run the prepare command again" in caplog.text
    caplog.clear()
    assert prepare_main(prepare) == 2  # continuing the preparation names the cut shard too
    assert "shard_000001.safetensors is incomplete or not a safetensors file" in caplog.text
    assert _files(tmp_path) == before


@pytest.fixture
def motion_file(tmp_path):
    from comovi_core.body.mannequin import demo_motion
    from comovi_core.body.motion_file import save_motion

    return save_motion(tmp_path / "m.npz", demo_motion(num_frames=4))


@pytest.fixture
def no_body(monkeypatch):
    """Loading a body model (the first real work of the export, motion-map, estimate and evaluate CLIs) fails the
    test."""
    import comovi_core.body.smpl
    import comovi_core.export.cli

    def work(*_, **__):
        pytest.fail("work started before the bad --out was refused")

    monkeypatch.setattr(comovi_core.body.smpl, "load_body_model", work)
    monkeypatch.setattr(comovi_core.export.cli, "load_body_model", work)


@pytest.mark.parametrize(
    "fmt, out, message",
    [
        ("obj", "file/meshes", "the --out folder .*file/meshes lies under .*file, which is a file"),
        ("obj", "file", "the --out folder .*file is a file, not a folder"),
        ("bvh", "file/clip.bvh", "the folder of clip.bvh .*file is a file, not a folder"),
        ("glb", "file/sub/clip.glb", "the folder of clip.glb .*file/sub lies under .*file, which is a file"),
        ("bvh", "folder.bvh", "the --out file .*folder.bvh is an existing folder, not a file: choose a file name"),
        ("glb", "folder.glb", "the --out file .*folder.glb is an existing folder, not a file"),
    ],
)
def test_export_refuses_an_out_under_a_file_or_a_folder_as_file(
    tmp_path, caplog, motion_file, no_body, fmt, out, message
):
    from comovi_core.export.cli import main as export_main

    (tmp_path / "file").write_text("x")
    (tmp_path / "folder.bvh").mkdir()
    (tmp_path / "folder.glb").mkdir()
    before = _files(tmp_path)
    assert export_main([str(motion_file), "--format", fmt, "--out", str(tmp_path / out)]) == 2
    assert re.search(message, caplog.text)
    assert _files(tmp_path) == before and (tmp_path / "file").read_text() == "x"


def test_save_motion_refuses_a_path_under_a_file_or_a_folder(tmp_path):
    from comovi_core.body.mannequin import demo_motion
    from comovi_core.body.motion_file import save_motion
    from comovi_core.errors import CoMoViError

    (tmp_path / "file").write_text("x")
    (tmp_path / "folder.npz").mkdir()
    motion = demo_motion(num_frames=2)
    for target, message in (
        ("file/m.npz", "folder of m.npz .*file is a file, not a folder"),
        ("file/sub/m.npz", "folder of m.npz .*file/sub lies under .*file, which is a file"),
        ("folder.npz", "folder.npz is an existing folder, not a file: choose a file name"),
    ):
        with pytest.raises(CoMoViError, match=message):
            save_motion(tmp_path / target, motion)
    assert _files(tmp_path) == ["file", "folder.npz"] and (tmp_path / "file").read_text() == "x"


def test_motion_map_estimate_and_evaluate_refuse_a_bad_out_before_work(tmp_path, caplog, motion_file, no_body):
    from comovi_core.evaluation.run import main as evaluate_main
    from comovi_core.motion_map.__main__ import main as motion_map_main
    from comovi_core.recovery.estimate import main as estimate_main

    (tmp_path / "file").write_text("x")
    (tmp_path / "folder.mp4").mkdir()
    run = tmp_path / "run"
    run.mkdir()
    (run / "motion.npz").write_bytes(motion_file.read_bytes())
    before = _files(tmp_path)
    cases = (
        (
            motion_map_main,
            ["--motion", str(motion_file), "--out", str(tmp_path / "folder.mp4")],
            "the --out video .*folder.mp4 is an existing folder",
        ),
        (motion_map_main, ["--out", str(tmp_path / "file" / "map.mp4")], "the folder of map.mp4 .*file is a file"),
        (
            motion_map_main,
            ["--out", str(tmp_path / "map.mp4"), "--png-dir", str(tmp_path / "file" / "png")],
            "the --png-dir folder .*file/png lies under",
        ),
        (
            estimate_main,
            [str(tmp_path / "pose.json"), "--out", str(tmp_path / "folder.mp4")],
            "the --out file .*folder.mp4 is an existing folder",
        ),
        (
            evaluate_main,
            [str(run), "--out", str(tmp_path / "file" / "eval.json")],
            "the folder of eval.json .*file is a",
        ),
    )
    for main, argv, message in cases:
        caplog.clear()
        assert main(argv) == 2
        assert re.search(message, caplog.text), caplog.text
    assert _files(tmp_path) == before


def test_obj_export_leaves_no_stale_frames_and_never_deletes_other_files(tmp_path, monkeypatch):
    import pathlib

    from comovi_core.body.mannequin import demo_motion
    from comovi_core.body.smpl import load_body_model
    from comovi_core.export.obj import write_obj_sequence

    body, seq = load_body_model(None), tmp_path / "seq"
    write_obj_sequence(seq, body, demo_motion(num_frames=9))
    for name in ("frame_notes.obj", "frame_1.obj", "readme.txt"):  # look like ours, but we did not write them
        (seq / name).write_text("mine")
    (seq / "frame_000123.obj").mkdir()
    paths = write_obj_sequence(seq, body, demo_motion(num_frames=4))
    frames = [f"frame_{i:06d}.obj" for i in range(4)]
    assert [p.name for p in paths] == frames
    assert sorted(p.name for p in seq.iterdir()) == sorted(
        [*frames, "frame_000123.obj", "frame_1.obj", "frame_notes.obj", "readme.txt"]
    )
    before = {p.name: p.read_bytes() for p in seq.iterdir() if p.is_file()}
    writes = []

    def failing_write(self, *args, **kwargs):
        writes.append(self)
        if len(writes) == 2:
            raise OSError("disk full")
        return original(self, *args, **kwargs)

    original = pathlib.Path.write_text
    monkeypatch.setattr(pathlib.Path, "write_text", failing_write)
    with pytest.raises(OSError, match="disk full"):
        write_obj_sequence(seq, body, demo_motion(num_frames=9))
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in seq.iterdir() if p.is_file()} == before  # the old sequence, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seq"]  # no staging folder left


def test_a_staged_folder_appears_whole_or_not_at_all(tmp_path, monkeypatch):
    """atomic.staged_folder (generate's run folder, the OBJ sequence): a failure while writing leaves nothing; a
    failure while publishing into a used folder leaves it without its completion marker, the user's files kept."""
    import os

    from comovi_core.files.atomic import staged_folder

    def run_files(name):
        return name in ("a.txt", "b.txt")

    with pytest.raises(OSError), staged_folder(tmp_path / "new", run_files, "meta.json") as staging:
        (staging / "a.txt").write_text("1")
        raise OSError("crash while writing")
    assert list(tmp_path.iterdir()) == []
    used = tmp_path / "used"
    with staged_folder(used, run_files, "meta.json") as staging:
        for name in ("a.txt", "b.txt", "meta.json"):
            (staging / name).write_text("old")
    (used / "notes.txt").write_text("mine")
    replaced, original = [], os.replace

    def failing_replace(src, dst):
        replaced.append(dst)
        if len(replaced) == 2:
            raise OSError("crash while publishing")
        original(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="while publishing"), staged_folder(used, run_files, "meta.json") as staging:
        for name in ("a.txt", "b.txt", "meta.json"):
            (staging / name).write_text("new")
    assert sorted(p.name for p in used.iterdir()) == ["a.txt", "b.txt", "notes.txt"]  # no marker: not a whole run
    assert (used / "notes.txt").read_text() == "mine" and sorted(p.name for p in tmp_path.iterdir()) == ["used"]
