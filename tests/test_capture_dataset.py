"""`python -m comovi_core.capture VIDEOS --out DATASET`: clip folders that training reads unchanged, cropped around
the person with the camera following the crop, captions from every source, rejections with their reasons, and a
run that resumes without redoing anything.

The videos are made here: the stand-in mannequin's demo motion as a grey silhouette on white (96x128 and a portrait
128x96, 24 fps, 3 s). The capture itself is a stand-in (``oracle``): it finds each frame's source frame and returns
the motion that drew it (with a little pose noise) and the detector's boxes; the detector stand-in boxes the
silhouette. So these tests check this command's own work: resampling, cropping, the camera, filters, files."""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from comovi_core.body.mannequin import demo_motion
from comovi_core.body.motion_file import SMPLMotion, load_motion
from comovi_core.body.smpl import load_body_model
from comovi_core.capture import dataset
from comovi_core.errors import CoMoViError, run_cli
from comovi_core.files.video import mp4_writer, probe_video, read_video, to_uint8
from comovi_core.motion_map.render import render_motion

SIZE = ["--height", "64", "--width", "96", "--clip-seconds", "1", "--fps", "8", "--renderer", "torch"]
FRAMES = 9  # 1 s at 8 fps, 4k+1
LOAD_ESTIMATOR = dataset._load_estimator  # before the stand-ins replace it


@pytest.fixture(scope="module")
def body():
    return load_body_model(None)


def _silhouette_video(path: Path, body, height: int, width: int, seconds: float = 3.0, fps: float = 24.0):
    motion = demo_motion(num_frames=int(seconds * fps), height=height, width=width, fps=fps)
    maps = render_motion(body, motion, backend="torch")
    rgb = torch.where(maps.mask[..., None], torch.tensor(0.45) + 0.1 * maps.images, torch.ones(()))
    with mp4_writer(path, height, width, fps) as send:
        send(to_uint8(rgb))
    return motion, torch.from_numpy(read_video(path).astype(np.float32) / 255)


@pytest.fixture(scope="module")
def videos(tmp_path_factory, body):
    """Two 3 s silhouette videos (landscape with a sidecar caption, portrait captioned in a CSV) and their truth."""
    folder = tmp_path_factory.mktemp("videos")
    truth = {
        "walk": _silhouette_video(folder / "walk.mp4", body, 96, 128),
        "tall": _silhouette_video(folder / "tall.mp4", body, 128, 96),
    }
    (folder / "walk.txt").write_text("a person waves\n")
    (folder / "captions.csv").write_text(
        "video,start,caption\ntall.mp4,1,a tall person bends\ntall.mp4,,a tall person\n"
    )
    return folder, truth


def _person_box(image: torch.Tensor) -> np.ndarray | None:
    """The detector stand-in: the box of the non-white pixels of (H, W, 3) in [0, 1]."""
    rows, cols = torch.nonzero((image < 0.85).any(-1), as_tuple=True)
    if len(rows) == 0:
        return None
    return np.array([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1], np.float32)


def oracle(truth: dict, calls: list):
    """A stand-in for capture.video.capture_motion with its interface: each frame's nearest source frame gives the
    pose (plus noise), the detector the boxes; frames without a person are lost."""

    def capture(frames, fps, *, estimator, body, detector, options):
        calls.append(len(frames))
        assert options.max_lost_fraction == 0.2 and options.min_box_fraction == 0.1
        sources = [(m, f) for m, f in truth.values() if f.shape[1:] == frames.shape[1:]]
        motion, source = min(sources, key=lambda s: float((s[1][:1] - frames[:1]).abs().min()))
        distance = ((frames[:, None] - source[None]) ** 2).flatten(2).mean(-1)  # (T, N)
        idx = distance.argmin(1).numpy()
        boxes = [detector(frame) for frame in frames]
        lost = np.array([b is None for b in boxes])
        boxes = np.stack([np.zeros(4, np.float32) if b is None else b for b in boxes])
        noise = np.random.default_rng(0).normal(0, 0.01, (len(idx), 69)).astype(np.float32)
        result_motion = SMPLMotion(
            motion.global_orient[idx],
            motion.body_pose[idx] + noise,
            motion.betas,
            motion.transl[idx],
            fps,
            motion.camera,
        )
        n = len(frames)
        track = SimpleNamespace(
            boxes=boxes,
            scores=np.where(lost, 0.0, 0.9),
            detected=~lost,
            interpolated=np.zeros(n, bool),
            lost=lost,
            people=(~lost).astype(int),
            rule="largest",
        )
        verdict = "rejected" if lost.mean() > options.max_lost_fraction else "ok"
        reasons = ["the person is lost in too many frames"] if verdict != "ok" else []
        confidence = np.where(lost, 0.0, 0.9)
        return SimpleNamespace(
            motion=result_motion, confidence=confidence, track=track, verdict=verdict, reasons=reasons, info={}
        )

    return capture


@pytest.fixture(autouse=True)
def stand_ins(monkeypatch):
    """The detector stand-in; a tiny estimator is not loaded (the capture is a stand-in); CaptureOptions as it is in
    comovi_core.capture.video, or its fields where that module has not landed yet."""
    monkeypatch.setattr(dataset, "_load_detector", lambda args: _person_box)
    monkeypatch.setattr(dataset, "_load_estimator", lambda args: "estimator")
    if importlib.util.find_spec("comovi_core.capture.video") is None:
        monkeypatch.setattr(
            dataset,
            "_options",
            lambda args: SimpleNamespace(max_lost_fraction=args.max_missing, min_box_fraction=args.min_box_fraction),
        )


@pytest.fixture
def estimator(tmp_path):
    path = tmp_path / "hmr2.safetensors"
    path.write_bytes(b"stand-in: never read in these tests")
    return path


def _run(argv, capture) -> int:
    return run_cli(dataset.parse_args, functools.partial(dataset.run, capture=capture), dataset.log, argv)


def _report(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "report.jsonl").read_text().splitlines()]


def _mtimes(folder: Path) -> dict:
    return {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def _mask(frames: np.ndarray) -> np.ndarray:
    """The silhouette (grey about 0.5 on white): pixels darker than half-way."""
    return (frames.astype(np.float32) / 255 < 0.75).any(-1)


def test_clip_lengths_sampling_and_the_crop_window():
    assert dataset.clip_frame_count(5, 16) == 81 and dataset.clip_frame_count(1, 8) == 9
    assert dataset.clip_frame_count(2, 24) == 49
    assert dataset.source_indices(1.0, 5, 8, 24).tolist() == [24, 27, 30, 33, 36]
    assert dataset.source_indices(0.0, 3, 16, 30).tolist() == [0, 2, 4]  # nearest: 1.875 -> 2, 3.75 -> 4
    # a landscape frame: the largest 2:3 window inside it, moved onto the person
    w = dataset.clip_window(np.array([[90.0, 20, 110, 80]]), (96, 128), (64, 96), margin=0.1)
    assert (w.height, w.width) == (85, 128) and w.left == 0 and 0 <= w.top <= 96 - 85
    assert w.top <= 20 - 6 and w.top + w.height >= 80 + 6  # the box and its margin are inside
    # a portrait frame with a tall person: the window grows past the frame's sides (padding), centred
    w = dataset.clip_window(np.array([[30.0, 10, 60, 110]]), (128, 96), (64, 96), margin=0.1)
    assert w.height >= 100 + 2 * 10 - 1 and w.width == round(w.height * 1.5) and w.left == (96 - w.width) // 2
    assert w.top <= 0 and w.top + w.height >= 120
    with pytest.raises(CoMoViError, match="multiples of 32"):
        dataset.check_training_size(60, 96, 9)


def test_clips_from_videos_pass_the_training_checks_and_the_motion_map_lies_on_the_person(
    tmp_path, videos, estimator, body
):
    from comovi_core.training.data import check_clips, load_clips

    folder, truth = videos
    out, calls = tmp_path / "clips", []
    argv = [str(folder), "--out", str(out), "--estimator", str(estimator), "--captions", str(folder / "captions.csv")]
    assert _run([*argv, *SIZE], oracle(truth, calls)) == 0
    assert calls == [FRAMES] * 4
    clip_dirs = check_clips(out, FRAMES, 64, 96)  # unchanged training code accepts them
    assert [d.name for d in clip_dirs] == ["tall_00", "tall_01", "walk_00", "walk_01"]
    clips = load_clips(out, FRAMES, 64, 96)
    assert [c.caption for c in clips] == ["a tall person", "a tall person bends", "a person waves", "a person waves"]
    for clip_dir, clip in zip(clip_dirs, clips):
        assert probe_video(clip_dir / "rgb.mp4") == (FRAMES, 64, 96) == probe_video(clip_dir / "motion_map.mp4")
        motion = load_motion(clip_dir / "motion.npz")
        assert motion.num_frames == FRAMES and motion.fps == 8 and motion.camera.image_size == (64, 96)
        person = _mask(to_uint8(clip.rgb))
        assert person.sum(axis=(1, 2)).min() > 100
        # never cut off: no silhouette pixel on the border, in any frame
        assert not person[:, [0, -1], :].any() and not person[:, :, [0, -1]].any()
        drawn = render_motion(body, motion, backend="torch").mask.numpy()
        iou = (person & drawn).sum() / (person | drawn).sum()
        assert iou > 0.85, f"{clip_dir.name}: motion map and video overlap with IoU {iou:.2f}"
        moved = dataclasses.replace(motion.camera, principal_point=np.add(motion.camera.principal_point, (2, 2)))
        off = render_motion(body, motion, moved, backend="torch").mask.numpy()  # 2 px off: the IoU tells
        assert (person & off).sum() / (person | off).sum() < iou - 0.1
    # the portrait video is padded with white at its sides; the landscape one is not padded
    tall = json.loads((out / "tall_00" / "capture.json").read_text())["crop"]
    assert tall["left"] < 0 and tall["left"] + tall["width"] > 96
    walk = json.loads((out / "walk_00" / "capture.json").read_text())["crop"]
    assert walk["left"] >= 0 and walk["left"] + walk["width"] <= 128 and walk["top"] >= 0
    lines = _report(out)
    assert [(r["clip"], r["status"]) for r in lines] == [
        ("tall_00", "kept"),
        ("tall_01", "kept"),
        ("walk_00", "kept"),
        ("walk_01", "kept"),
    ]
    assert (
        lines[0]["frames"] == FRAMES and lines[0]["confidence"]["mean"] == 0.9 and lines[0]["seconds"]["capture"] >= 0
    )
    assert {r["caption_source"] for r in lines} == {"captions", "sidecar"}
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["videos"], summary["kept"], summary["rejected"], summary["failed"]) == (2, 4, 0, 0)

    # run again: nothing is redone, nothing rewritten
    before, calls[:] = _mtimes(out), []
    assert _run([*argv, *SIZE], oracle(truth, calls)) == 0
    assert calls == [] and _mtimes(out) == before

    # other settings on the same dataset are refused
    assert _run([*argv, *SIZE[:-4], "--fps", "12", "--renderer", "torch"], oracle(truth, calls)) == 2
    assert calls == []


def test_prepare_accepts_the_dataset(tmp_path, videos, estimator, fresh_accelerate_state):
    from comovi_core.training import prepare

    folder, truth = videos
    out = tmp_path / "clips"
    argv = [str(folder / "walk.mp4"), "--out", str(out), "--estimator", str(estimator), *SIZE]
    assert _run(argv, oracle(truth, [])) == 0
    cache = tmp_path / "cache"
    args = ["--preset", "tiny", "--data", str(out), "--out", str(cache), "--frames", "9", "--height", "64"]
    assert prepare.main([*args, "--width", "96"]) == 0
    manifest = json.loads((cache / "manifest.json").read_text())
    assert manifest["clips"] == 2 and manifest["skipped"] == 0
    assert [c for s in manifest["shards"] for c in s["clips"]] == ["walk_00", "walk_01"]
    assert all(s for shard in manifest["shards"] for s in shard["smpl"])


def test_bad_videos_are_rejected_with_their_reasons_and_the_run_goes_on(tmp_path, videos, estimator, body):
    folder, truth = videos
    bad = tmp_path / "bad"
    bad.mkdir()
    _silhouette_video(bad / "short.mp4", body, 96, 128, seconds=0.5)
    (bad / "short.txt").write_text("a short clip")
    with mp4_writer(bad / "empty_room.mp4", 96, 128, 24) as send:
        send(np.full((72, 96, 128, 3), 255, np.uint8))
    (bad / "empty_room.txt").write_text("nobody")
    (bad / "broken.mp4").write_bytes(b"not a video at all")
    (bad / "empty.mp4").write_bytes(b"")
    shutil.copy(folder / "walk.mp4", bad / "uncaptioned.mp4")
    out, calls = tmp_path / "clips", []
    argv = [str(bad), "--out", str(out), "--estimator", str(estimator), "--workers", "2", *SIZE]
    assert _run(argv, oracle(truth, calls)) == 0
    assert len(calls) == 2  # only the empty room's two clips reach the capture
    assert sorted(p.name for p in out.iterdir()) == ["capture.json", "report.jsonl", "summary.json"]
    codes = {(Path(r["video"]).name, r["index"]): r["codes"] for r in _report(out)}
    assert codes == {
        ("broken.mp4", None): ["unreadable"],
        ("empty.mp4", None): ["unreadable"],
        ("empty_room.mp4", 0): ["no_person"],
        ("empty_room.mp4", 1): ["no_person"],
        ("short.mp4", 0): ["too_short"],
        ("short.mp4", 1): ["too_short"],
        ("uncaptioned.mp4", 0): ["no_caption"],
        ("uncaptioned.mp4", 1): ["no_caption"],
    }
    reasons = {Path(r["video"]).name: r["reasons"][0] for r in _report(out)}
    assert "not a readable video" in reasons["broken.mp4"] and "uncaptioned.txt" in reasons["uncaptioned.mp4"]
    assert "0.50 s long" in reasons["short.mp4"] and "--clip-seconds" in reasons["short.mp4"]
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["kept"], summary["rejected"], summary["failed"]) == (0, 8, 0)
    assert summary["rejected_by_reason"] == {"unreadable": 2, "no_person": 2, "too_short": 2, "no_caption": 2}

    # rejected videos are skipped next time, unless asked again; then a caption that appeared is used
    assert _run(argv, oracle(truth, calls)) == 0 and len(calls) == 2 and len(_report(out)) == 8
    (bad / "uncaptioned.txt").write_text("now with a caption")
    assert _run([*argv, "--retry-rejected"], oracle(truth, calls)) == 0
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["uncaptioned_00", "uncaptioned_01"]
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["kept"], summary["rejected"]) == (2, 6) and "no_caption" not in summary["rejected_by_reason"]


def test_a_killed_run_is_cleaned_up_and_completed(tmp_path, videos, estimator):
    from comovi_core.training.data import check_clips

    folder, truth = videos
    out, calls = tmp_path / "clips", []
    argv = [str(folder / "walk.mp4"), str(folder / "tall.mp4"), "--out", str(out), "--estimator", str(estimator)]
    argv += ["--captions", str(folder / "captions.csv"), *SIZE]
    assert _run(argv, oracle(truth, calls)) == 0
    # what kill -9 can leave: a staging folder, a torn report line, a clip published before its report line; and a
    # clip folder that lost files (not from this command, whose folders appear whole)
    (out / ".walk_01.partial-x1y2").mkdir()
    (out / ".walk_01.partial-x1y2" / "rgb.mp4").write_bytes(b"half")
    (out / ".summary.json.abc.json").write_text("{")
    lines = (out / "report.jsonl").read_text().splitlines()
    (out / "report.jsonl").write_text("\n".join(lines[:-1]) + '\n{"video": "tr')  # walk_01's line torn
    (out / "tall_01" / "motion_map.mp4").unlink()
    (out / "tall_01" / "capture.json").unlink()
    kept = {p: t for p, t in _mtimes(out).items() if p.parent.name in ("tall_00", "walk_00", "walk_01")}
    calls[:] = []
    assert _run(argv, oracle(truth, calls)) == 0
    assert calls == [FRAMES]  # only tall_01 is made again
    assert {p: t for p, t in _mtimes(out).items() if p in kept} == kept
    assert [p.name for p in out.glob(".*")] == []
    assert len(check_clips(out, FRAMES, 64, 96)) == 4
    latest = {(r["clip"]): r["status"] for r in _report(out)}
    assert latest == {"tall_00": "kept", "tall_01": "kept", "walk_00": "kept", "walk_01": "kept"}
    assert json.loads((out / "summary.json").read_text())["kept"] == 4


def test_a_bad_out_or_a_missing_estimator_stops_at_once(tmp_path, videos, estimator, caplog):
    folder, truth = videos
    calls = []
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    video = str(folder / "walk.mp4")
    assert _run([video, "--out", str(a_file), "--estimator", str(estimator), *SIZE], oracle(truth, calls)) == 2
    assert "is a file, not a folder: choose a folder name" in caplog.text
    assert (
        _run([video, "--out", str(tmp_path / "o"), "--estimator", str(tmp_path / "no.ckpt")], oracle(truth, calls)) == 2
    )
    assert "not found: download HMR 2.0 or CameraHMR" in caplog.text
    assert _run([video, "--out", str(tmp_path / "o")], oracle(truth, calls)) == 2
    assert "--estimator is needed" in caplog.text
    assert _run([str(tmp_path / "nothing"), "--out", str(tmp_path / "o"), "--estimator", str(estimator)], None) == 2
    assert calls == [] and not (tmp_path / "o").exists()


def test_a_corrupt_estimator_fails_each_clip_in_the_report_and_exits_2(tmp_path, videos, monkeypatch, caplog):
    monkeypatch.undo()  # the real estimator loader
    monkeypatch.setattr(dataset, "_load_detector", lambda args: _person_box)
    folder, truth = videos
    corrupt = tmp_path / "hmr2.safetensors"
    corrupt.write_bytes(b"\x00" * 64)
    out, calls = tmp_path / "clips", []
    argv = [str(folder / "walk.mp4"), "--out", str(out), "--estimator", str(corrupt), *SIZE]
    assert _run(argv, oracle(truth, calls)) == 2
    assert calls == [] and "2 clip(s) failed" in caplog.text
    lines = _report(out)
    assert [(r["clip"], r["status"], r["codes"]) for r in lines] == [
        ("walk_00", "failed", ["tool"]),
        ("walk_01", "failed", ["tool"]),
    ]
    assert "hmr2.safetensors" in lines[0]["reasons"][0]
    assert [p.name for p in out.iterdir() if p.is_dir()] == []
    assert json.loads((out / "summary.json").read_text())["failed_by_reason"] == {"tool": 2}


def test_caption_tables_sidecars_and_the_captioner(tmp_path, videos, estimator, monkeypatch):
    csv_file = tmp_path / "c.csv"
    csv_file.write_text("video,start,caption\nsub/a.mp4,0,first\nsub/a.mp4,5,second\nb.mp4,,any b\n")
    table = dataset.CaptionTable(csv_file)
    assert table.find(tmp_path / "sub" / "a.mp4", 5.02, 1 / 32) == "second"
    assert table.find(tmp_path / "sub" / "a.mp4", 0, 1 / 32) == "first"
    assert table.find(tmp_path / "sub" / "a.mp4", 2.5, 1 / 32) is None
    assert table.find(Path("/elsewhere/b.mp4"), 10, 1 / 32) == "any b"  # by file name
    jsonl = tmp_path / "c.jsonl"
    jsonl.write_text(json.dumps({"video": "a.mp4", "start": 0, "caption": "from jsonl"}) + "\n\n")
    assert dataset.CaptionTable(jsonl).find(tmp_path / "a.mp4", 0, 0.1) == "from jsonl"
    (tmp_path / "bad.csv").write_text("name,text\nx,y\n")
    with pytest.raises(CoMoViError, match="line 2: needs video, start"):
        dataset.CaptionTable(tmp_path / "bad.csv")
    (tmp_path / "v.mp4.txt").write_text(" sidecar \n")
    assert dataset.sidecar_caption(tmp_path / "v.mp4") == "sidecar"

    # the captioner: loaded only when a clip has no caption, loudly refused when unavailable
    with pytest.raises(CoMoViError, match="cannot be loaded.*--allow-download"):
        dataset.VLMCaptioner(str(tmp_path / "no_model"), "describe", "cpu")
    loads = []

    class FakeCaptioner:
        def __init__(self, source, prompt, device, allow_download):
            loads.append((source, prompt))

        def __call__(self, frames):
            assert frames.shape == (FRAMES, 64, 96, 3)
            return "a person, as the model saw it"

    monkeypatch.setattr(dataset, "VLMCaptioner", FakeCaptioner)
    folder, truth = videos
    out = tmp_path / "clips"
    argv = [str(folder / "walk.mp4"), "--out", str(out), "--estimator", str(estimator), "--captioner", "qwen"]
    assert _run([*argv, "--clips-per-video", "1", *SIZE], oracle(truth, [])) == 0
    assert loads == []  # walk.mp4 has a sidecar caption
    uncaptioned = tmp_path / "v" / "u.mp4"
    uncaptioned.parent.mkdir()
    shutil.copy(folder / "walk.mp4", uncaptioned)
    argv[0] = str(uncaptioned)
    assert _run([*argv, "--caption-prompt", "what happens?", *SIZE], oracle(truth, [])) == 0
    assert loads == [("qwen", "what happens?")]  # once for both clips
    assert (out / "u_01" / "caption.txt").read_text() == "a person, as the model saw it\n"
    assert _report(out)[-1]["caption_source"] == "captioner"


def test_the_real_capture_with_a_tiny_hmr2_writes_clips_training_reads(tmp_path, videos, monkeypatch):
    """End to end with the capture core itself (``capture.video.capture_motion``), a tiny random-weight HMR 2.0
    file and the detector stand-in giving every person's box: the clip folders pass the training checks, each
    motion has one shape and the clip camera, and the report keeps the capture's confidence."""
    from comovi_core.recovery.hmr.config import PRESETS
    from comovi_core.recovery.hmr.loading import save_hmr2
    from comovi_core.recovery.hmr.model import HMR2
    from comovi_core.training.data import check_clips

    folder, _ = videos
    torch.manual_seed(0)
    path = save_hmr2(HMR2(PRESETS["tiny"]).eval(), tmp_path / "hmr2_tiny.safetensors")
    monkeypatch.setattr(dataset, "_load_estimator", LOAD_ESTIMATOR)  # the real loader (stand_ins replaced it)

    def detections(image):
        box = _person_box(image)
        return (np.zeros((0, 4), np.float32), np.zeros(0, np.float32)) if box is None else (box[None], np.ones(1))

    monkeypatch.setattr(dataset, "_load_detector", lambda args: detections)
    out = tmp_path / "clips"
    argv = [str(folder / "walk.mp4"), "--out", str(out), "--estimator", str(path), "--min-confidence", "0"]
    assert run_cli(dataset.parse_args, dataset.run, dataset.log, [*argv, *SIZE, "--clips-per-video", "1"]) == 0
    (clip_dir,) = check_clips(out, FRAMES, 64, 96)
    motion = load_motion(clip_dir / "motion.npz")
    assert motion.num_frames == FRAMES and motion.betas.shape == (10,) and motion.camera.image_size == (64, 96)
    assert np.isfinite(motion.body_pose).all() and (motion.transl[:, 2] > 0).all()
    (line,) = _report(out)
    assert line["status"] == "kept" and 0 <= line["confidence"]["min"] <= line["confidence"]["mean"] <= 1


def test_every_threshold_flag_reaches_the_capture_core(tmp_path):
    """The verdict of ``capture_motion`` uses the flags' values, not its defaults (a looser --max-crowded than the
    default 0.5 was once ignored there: found on public videos with a tiny random detector)."""
    from comovi_core.capture.video import CaptureOptions

    args = dataset.parse_args(
        [str(tmp_path), "--out", str(tmp_path / "out"), "--max-crowded", "1.0", "--max-missing", "0.35"]
        + ["--min-confidence", "0.25", "--min-box-fraction", "0.05", "--min-score", "0.4", "--max-gap", "3"]
    )
    options = dataset._options(args)
    assert isinstance(options, CaptureOptions)
    assert (options.max_crowded_fraction, options.max_lost_fraction, options.min_confidence) == (1.0, 0.35, 0.25)
    assert (options.min_box_fraction, options.min_score, options.max_gap) == (0.05, 0.4, 3)
