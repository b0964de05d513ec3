"""The training cache: prepare -> train --cache equals training on the clips, prepare resumes without rewriting
finished shards, bad clips are skipped with their reasons, ranks split the shards, memory does not grow with the
number of clips, and the VAE and text encoder are never loaded when training on a cache."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys

import pytest
from safetensors.torch import load_file
from train_runs import metrics_rows

from comovi_core.body.smpl import load_body_model
from comovi_core.errors import CoMoViError, TrainingDataError
from comovi_core.training import cache_write, prepare, train
from comovi_core.training.data import synthetic_clips, write_clip
from comovi_core.training.data_order import EpochOrder, sample_index

pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")


@pytest.fixture(scope="module")
def clip_folders(tmp_path_factory):
    """Three synthetic clip folders (9 frames, 64x64, with SMPL), written once; tests copy them."""
    base = tmp_path_factory.mktemp("clips")
    for i, clip in enumerate(synthetic_clips(load_body_model(None), 3, 9, 64, 64, seed=0)):
        write_clip(base / f"clip_{i}", clip)
    return base


def _dataset(folder, clip_folders, count):
    """``count`` clip folders (copies of the three, in turn) in ``folder``."""
    for i in range(count):
        shutil.copytree(clip_folders / f"clip_{i % 3}", folder / f"clip_{i:03d}")
    return folder


def _prepare(data, out, *extra):
    return prepare.main(["--preset", "tiny", "--data", str(data), "--out", str(out), *extra])


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_epoch_order_visits_every_sample_once_per_epoch_one_shard_at_a_time():
    sizes = [2, 0, 3, 1]
    order = EpochOrder(7, sizes)
    epochs = [[order(e * 6 + i) for i in range(6)] for e in range(3)]
    everything = sorted((s, i) for s, n in enumerate(sizes) for i in range(n))
    assert all(sorted(epoch) == everything for epoch in epochs)
    assert all(
        [s for s, _ in epoch] == sorted([s for s, _ in epoch], key=[s for s, _ in epoch].index) for epoch in epochs
    )  # each shard's samples are consecutive: one shard open at a time
    assert len({tuple(epoch) for epoch in epochs}) == 3  # reshuffled every epoch
    assert [EpochOrder(7, sizes)(i) for i in range(18)] == [x for epoch in epochs for x in epoch]  # a pure function
    # 2 processes x accumulation 1 read what 1 process x accumulation 2 reads
    assert [sample_index(s, p, 2, 1, 0) for s in (1, 2) for p in (0, 1)] == [
        sample_index(s, 0, 1, 2, k) for s in (1, 2) for k in (0, 1)
    ]


def test_training_on_the_cache_equals_training_on_the_clips_without_vae_or_text_encoder(
    tmp_path, clip_folders, monkeypatch, caplog
):
    data = _dataset(tmp_path / "data", clip_folders, 3)
    assert _prepare(data, tmp_path / "cache", "--shard-size", "4") == 0  # one shard: the order of the clips in memory
    run = ["--preset", "tiny", "--stage", "2", "--steps", "3", "--grad-accum", "2", "--text-dropout", "0.3"]
    assert train.main([*run, "--data", str(data), "--out", str(tmp_path / "clips")]) == 0

    def refuse(*args, **kwargs):
        raise AssertionError("a codec was loaded for a --cache run")

    for module, name in (
        ("comovi_core.codecs.loading", "load_codecs"),
        ("comovi_core.inference.tiny", "tiny_vae"),
        ("comovi_core.codecs.text", "TinyTextEncoder"),
        ("comovi_core.codecs.text", "UMT5TextEncoder"),
        ("comovi_core.codecs.vae_files", "load_wan22_vae"),
    ):
        monkeypatch.setattr(f"{module}.{name}", refuse)
    assert train.main([*run, "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "cached")]) == 0
    rows = {
        d: [json.loads(line) for line in (tmp_path / d / "metrics.jsonl").read_text().splitlines()]
        for d in ("clips", "cached")
    }
    for key in ("loss", "loss_motion", "loss_video", "loss_smpl", "grad_norm"):
        assert [r[key] for r in rows["cached"]] == pytest.approx([r[key] for r in rows["clips"]], rel=1e-6), key
    a, b = (load_file(str(tmp_path / d / "step_000003.safetensors")) for d in ("clips", "cached"))
    assert a.keys() == b.keys() and max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-6  # measured 0.0
    cache = str(tmp_path / "cache")
    for flags, message in (
        (
            ["--frames", "13"],
            r"holds clips of 9x64x64 \(frames x height x width\) but this run asks "
            r"for 13x64x64 \(--frames/--height/--width\): leave those flags out",
        ),
        (["--preset", "wan2.2-ti2v-5b"], "was prepared for --preset tiny"),
        (["--data", str(data)], "give either --data FOLDER, --cache FOLDER"),
    ):
        assert train.main([*run, "--cache", cache, *flags, "--out", str(tmp_path / "x")]) == 2
        assert re.search(message, caplog.text) and not (tmp_path / "x").exists()


def test_prepare_resumes_a_killed_run_and_keeps_finished_shards(tmp_path, clip_folders, monkeypatch, caplog):
    data, out = _dataset(tmp_path / "data", clip_folders, 5), tmp_path / "cache"
    real_build, calls = cache_write.build_shard, []

    def killed_at_the_second_shard(*args, **kwargs):
        calls.append(args[1])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_build(*args, **kwargs)

    monkeypatch.setattr(cache_write, "build_shard", killed_at_the_second_shard)
    with pytest.raises(KeyboardInterrupt):
        _prepare(data, out, "--shard-size", "2")
    monkeypatch.setattr(cache_write, "build_shard", real_build)
    assert sorted(p.name for p in out.glob("shard_*")) == ["shard_000000.safetensors"]
    assert not (out / "manifest.json").exists()
    (out / ".shard_000001.safetensors.x1y2.safetensors").write_bytes(b"half-written")  # what a real kill leaves
    first = (out / "shard_000000.safetensors").stat().st_mtime_ns, _digest(out / "shard_000000.safetensors")
    assert train.main(["--preset", "tiny", "--cache", str(out), "--out", str(tmp_path / "run")]) == 2
    assert "did not finish" in caplog.text
    assert _prepare(data, out, "--shard-size", "2") == 0
    assert ((out / "shard_000000.safetensors").stat().st_mtime_ns, _digest(out / "shard_000000.safetensors")) == first
    assert sorted(p.name for p in out.iterdir()) == [
        "empty_prompt.safetensors",
        "manifest.json",
        "plan.json",
        "report.json",
        *(f"shard_00000{k}.safetensors" for k in range(3)),
    ]
    manifest = json.loads((out / "manifest.json").read_text())
    assert [s["clips"] for s in manifest["shards"]] == [
        ["clip_000", "clip_001"],
        ["clip_002", "clip_003"],
        ["clip_004"],
    ]
    done = {p.name: (p.stat().st_mtime_ns, _digest(p)) for p in out.glob("shard_*")}
    caplog.clear()
    assert _prepare(data, out, "--shard-size", "2") == 0  # all done: nothing rewritten
    assert {p.name: (p.stat().st_mtime_ns, _digest(p)) for p in out.glob("shard_*")} == done
    assert caplog.text.count("is done, kept") == 3
    assert _prepare(data, out, "--shard-size", "2", "--latent-dtype", "bf16") == 2
    assert "prepared with other settings" in caplog.text and "'latent_dtype': ('fp32', 'bf16')" in caplog.text
    # what the cache holds is what the VAE gives and the SMPL of the clip
    shard = load_file(str(out / "shard_000002.safetensors"))
    assert shard["0.rgb"].shape == (48, 3, 4, 4) and shard["0.body_pose"].shape == (9, 69)
    assert shard["0.context"].shape[1] == 48 and shard["0.context"].abs().amax(1).min() > 0


def test_a_bad_clip_is_skipped_with_its_reason_and_nothing_usable_fails(tmp_path, clip_folders, caplog):
    data = _dataset(tmp_path / "data", clip_folders, 3)
    (data / "clip_001" / "caption.txt").unlink()
    (data / "clip_002" / "motion_map.mp4").write_bytes(b"not a video")
    assert _prepare(data, tmp_path / "cache") == 0
    report = json.loads((tmp_path / "cache" / "report.json").read_text())
    assert report["usable"] == 1 and [s["clip"] for s in report["skipped"]] == ["clip_001", "clip_002"]
    assert report["skipped"][0]["reasons"] == [
        (f"{data / 'clip_001'}: missing ['caption.txt']; see comovi_core.training.data for the layout")
    ]
    assert "motion_map.mp4: not a readable video" in report["skipped"][1]["reasons"][0]
    assert "re-encode it as H.264 mp4" in report["skipped"][1]["reasons"][0]
    assert "skipped clip clip_001: " in caplog.text
    assert json.loads((tmp_path / "cache" / "manifest.json").read_text())["shards"][0]["clips"] == ["clip_000"]
    shutil.rmtree(data / "clip_000")
    assert _prepare(data, tmp_path / "none") == 2
    assert "none of the 2 clips of" in caplog.text and "fix or replace them" in caplog.text
    with pytest.raises(TrainingDataError, match="missing \\['caption.txt'\\]"):
        cache_write.finalize(tmp_path / "none")
    assert not (tmp_path / "none" / "manifest.json").exists()


def test_two_ranks_prepare_disjoint_shards_and_the_last_one_writes_the_manifest(
    tmp_path, clip_folders, monkeypatch, caplog
):
    data, out = _dataset(tmp_path / "data", clip_folders, 7), tmp_path / "cache"
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    args = prepare.parse_args(["--data", "x", "--out", "y"])
    assert (args.rank, args.world_size) == (1, 2)
    assert _prepare(data, out, "--shard-size", "2", "--rank", "0", "--world-size", "2") == 0
    rank0 = {p.name for p in out.glob("shard_*")}
    assert rank0 == {"shard_000000.safetensors", "shard_000002.safetensors"} and not (out / "manifest.json").exists()
    assert "the last rank to finish writes manifest.json" in caplog.text
    with pytest.raises(CoMoViError, match="2 of 4 shards are not prepared yet"):
        cache_write.finalize(out)
    assert _prepare(data, out, "--shard-size", "2") == 0  # rank 1 of 2 from RANK / WORLD_SIZE
    rank1 = {p.name for p in out.glob("shard_*")} - rank0
    assert rank1 == {"shard_000001.safetensors", "shard_000003.safetensors"}
    manifest = json.loads((out / "manifest.json").read_text())
    names = [c for s in manifest["shards"] for c in s["clips"]]
    assert names == [f"clip_{i:03d}" for i in range(7)] and manifest["clips"] == 7
    assert manifest["buckets"] == {"9x64x64": 7}
    (out / "manifest.json").unlink()
    assert prepare.main(["--finalize", "--out", str(out)]) == 0
    assert json.loads((out / "manifest.json").read_text()) == manifest


CHILD = """
import json, sys
from comovi_core.training import prepare, train

def peak_mb():  # VmHWM: this process's peak resident memory since the last reset
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]) / 1024

data, out = sys.argv[1], sys.argv[2]
assert prepare.main(["--preset", "tiny", "--data", data, "--out", out + "/cache", "--shard-size", "4", "--frames", "5",
                     "--height", "32", "--width", "32"]) == 0
prepared = peak_mb()
open("/proc/self/clear_refs", "w").write("5")  # reset the peak
assert train.main(["--preset", "tiny", "--cache", out + "/cache", "--stage", "2", "--steps", "4", "--grad-accum", "3",
                   "--out", out + "/run"]) == 0
print(json.dumps({"prepare": prepared, "train": peak_mb()}))
"""


def test_peak_memory_does_not_grow_with_the_number_of_clips(tmp_path):
    """prepare + 4 training steps (12 samples over 3+ shards) on 8 and on 64 clips (5 frames of 32x32: a clip costs
    about as much time as a 64x64 one, ffmpeg's start dominates), each in a fresh process."""
    small = tmp_path / "small"
    for i, clip in enumerate(synthetic_clips(load_body_model(None), 3, 5, 32, 32, seed=1)):
        write_clip(small / f"clip_{i}", clip)
    children = {}
    for count in (8, 64):  # side by side: each measures only itself
        data = _dataset(tmp_path / f"data{count}", small, count)
        children[count] = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(data), str(tmp_path / f"out{count}")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
    peaks = {}
    for count, child in children.items():
        stdout, stderr = child.communicate(timeout=600)
        assert child.returncode == 0, stderr[-2000:]
        peaks[count] = json.loads(stdout.strip().splitlines()[-1])
        assert json.loads((tmp_path / f"out{count}" / "cache" / "manifest.json").read_text())["clips"] == count
    for phase in ("prepare", "train"):
        small, large = peaks[8][phase], peaks[64][phase]
        # measured +1.1 MB (prepare, 453 MB) and +0.2 MB (train, 543 MB); training on the same clips held in memory
        # (train --data, 9 frames of 64x64) grew by 53 MB from 8 to 64 clips
        assert large - small < 10 and large < 1.05 * small, (phase, peaks)


def test_caches_of_several_sizes_train_together_each_clip_at_its_size(tmp_path, clip_folders, caplog):
    """Buckets: one data folder with clips of two sizes, prepared once per size (each run skips the other size's clips
    with that reason) into two caches; train --cache A B visits every clip of both once per epoch at its own size
    (tokens per step: 2 branches x latent frames x (H/32) x (W/32))."""
    data = _dataset(tmp_path / "data", clip_folders, 2)  # 9 frames of 64x64
    for i, clip in enumerate(synthetic_clips(load_body_model(None), 2, 9, 32, 64, seed=5)):
        write_clip(data / f"wide_{i}", clip)  # 9 frames of 32x64
    assert _prepare(data, tmp_path / "square") == 0  # tiny default: 9 x 64 x 64
    assert _prepare(data, tmp_path / "wide", "--frames", "5", "--height", "32", "--width", "64") == 0
    reports = [json.loads((tmp_path / c / "report.json").read_text()) for c in ("square", "wide")]
    assert [r["usable"] for r in reports] == [2, 2]
    assert sorted(s["clip"] for s in reports[0]["skipped"]) == ["wide_0", "wide_1"]
    assert "but training runs at 32x64" in reports[1]["skipped"][0]["reasons"][0]
    out = tmp_path / "run"
    flags = ["--preset", "tiny", "--stage", "2", "--steps", "4", "--grad-accum", "1", "--out", str(out)]
    assert train.main([*flags, "--cache", str(tmp_path / "square"), str(tmp_path / "wide")]) == 0
    rows = metrics_rows(out)
    # one epoch of 4 clips, one per step: 2 x 3 x 2 x 2 = 24 tokens (9x64x64), 2 x 2 x 1 x 2 = 8 (5x32x64)
    assert sorted(r["tokens"] for r in rows) == [8, 8, 24, 24]
    assert all(r["loss_smpl"] > 0 for r in rows)  # the 3D head trains on both sizes (4 and 8 SMPL frames)
    with pytest.raises(CoMoViError, match="--height with 2 caches: each cache trains at its own size"):
        train.make_config(train.parse_args([*flags, "--height", "64", "--cache", str(tmp_path / "square"),
                                            str(tmp_path / "wide")]))  # fmt: skip
    with pytest.raises(CoMoViError, match=r"two --cache folders hold the same size \(9x64x64, 9x64x64\)"):
        train.make_config(train.parse_args([*flags, "--cache", str(tmp_path / "square"), str(tmp_path / "square")]))
