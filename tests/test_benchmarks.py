"""Every ``benchmarks/bench_*.py`` runs with ``--smoke`` (tiny sizes, seconds on a CPU, the same code as the full run)
and prints its figures: each script's output is parsed and its numbers checked, not only its exit status.

A new benchmark fails here until it takes ``--smoke`` and has its checks in ``CHECKS``. The smokes run in child
processes, two at a time (most of each one's time is importing torch and diffusers).
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p.name for p in (ROOT / "benchmarks").glob("bench_*.py"))
NUM = r"[-+]?(?:\d+\.?\d*(?:e[-+]?\d+)?|inf|nan)"
TIMEOUT_S = 600
# 7-15 s of CPU each (most scripts: 6 s, nearly all of it importing torch and diffusers); started first
SLOWEST = (
    "bench_vae_memory.py",
    "bench_load_ram.py",
    "bench_estimator.py",
    "bench_step_cache.py",
    "bench_fit_motion.py",
)


def _smoke(script: str) -> tuple[int, str, str, float, float]:
    """-> (exit status, stdout, stderr, wall seconds, CPU seconds of the script and the children it waited for)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        child = subprocess.Popen(
            [sys.executable, str(ROOT / "benchmarks" / script), "--smoke"], cwd=ROOT, env=env, stdout=out, stderr=err
        )
        timer = threading.Timer(TIMEOUT_S, child.kill)  # a hung benchmark fails instead of hanging the tests
        timer.start()
        _, status, usage = os.wait4(child.pid, 0)  # its rusage: CPU time of this script alone
        timer.cancel()
        child.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        return child.returncode, out.read(), err.read(), seconds, usage.ru_utime + usage.ru_stime


@pytest.fixture(scope="module")
def smokes(request) -> dict:
    """script -> ``_smoke``'s result, for the scripts this session's tests ask for, two at a time."""
    params = [getattr(item, "callspec", None) for item in request.session.items if item.module is request.module]
    wanted = {p.params["script"] for p in params if p is not None and "script" in p.params}
    wanted = sorted(wanted, key=lambda script: (script not in SLOWEST, script))  # the longest first: shorter overall
    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(wanted, pool.map(_smoke, wanted)))


def _float(text: str) -> float:
    value = float(text)
    assert math.isfinite(value), text
    return value


def _find(pattern: str, out: str, count: int | None = 1) -> list[tuple[str, ...]]:
    """Every match of ``pattern`` (groups as tuples) in ``out``; ``count`` of them when given."""
    found = [m.groups() for m in re.finditer(pattern, out, re.MULTILINE)]
    assert found, f"{pattern!r} not in the output:\n{out}"
    if count is not None:
        assert len(found) == count, f"{pattern!r}: {len(found)} matches, {count} expected:\n{out}"
    return found


def _median(out: str, name: str) -> float:
    """The median of a ``timing.describe`` line named ``name``: finite and positive, spread around it."""
    (median, low, high, *_), *_ = _find(
        rf"^\s*{re.escape(name)}\s*:.*?median ({NUM})(?: \w+)?  IQR ({NUM})-({NUM})  min-max ({NUM})-({NUM})"
        rf"(?: \w+)?  \(n=(\d+)\)",
        out,
    )
    median, low, high = _float(median), _float(low), _float(high)
    assert 0 < low <= median <= high, (name, low, median, high)
    return median


def _verdict(out: str, name: str) -> str:
    (verdict,) = _find(rf"^\s*{re.escape(name)}\s*:.*median [<>]= {NUM}(?: \w+)?: (PASS|FAIL)$", out)[0]
    return verdict


def check_block_swap(out: str) -> None:
    _find(r"preset tiny, 2 layer pairs \(\d+\.\d MiB each\), 1 offloaded, 4 tokens per branch", out)
    modes = ("plain", "swapper", "pairs", "diffusers")
    for mode in modes:
        _median(out, mode)
    traffic = _find(
        rf"per forward: host->device ({NUM}) MiB, device->host ({NUM}) MiB, .* plain: (True|False)$", out, 4
    )
    assert all(same == "True" for *_, same in traffic)  # offloading changes no output
    moved = dict(zip(modes, (_float(h2d) for h2d, _, _ in traffic)))
    assert moved["plain"] == 0 and moved["swapper"] > 0 and moved["pairs"] > 0  # the offloaded pair travels
    for ratio in ("pairs/swapper", "pairs/plain", "diffusers/swapper"):
        _median(out, ratio)
    assert _verdict(out, "pairs/swapper") in ("PASS", "FAIL")


def check_dual_step(out: str) -> None:
    _find(r"preset tiny: dim 96, 2 layers, latents 2x4x4 \(8 tokens/branch\), cpu, float32, 1 threads", out)
    dual, single = _median(out, "dual step"), _median(out, "single Wan")
    assert dual > single  # two branches
    assert _median(out, "dual/single") > 1
    _verdict(out, "dual/single")


def check_estimator(out: str) -> None:
    _find(r"refinement on the stand-in body \(176 x 320, 50 deg\)", out)
    scores = {}
    for name, mpjpe, pa, iou, transl in _find(
        rf"^  frame 3 turn \+0\.6 (\w+)\s*: +({NUM}) / +({NUM}) mm, IoU ({NUM}), transl ({NUM}) m$", out, 3
    ):
        scores[name] = [_float(v) for v in (mpjpe, pa, iou, transl)]
        assert scores[name][0] > 0 and scores[name][1] > 0 and 0 < scores[name][2] <= 1 and scores[name][3] >= 0
    assert set(scores) == {"start", "refined", "keypoint_fit"}
    assert scores["refined"][0] < scores["start"][0]  # the refinement moves toward the truth
    _find(r"HMR 2\.0 tiny \(0\.\d{4} M parameters, random weights\), cpu, 1 threads", out)
    _median(out, "HMR2 tiny crop")
    assert _float(_find(rf"peak RSS of this process: ({NUM}) GiB", out)[0][0]) > 0


def check_fit_motion(out: str) -> None:
    _find(r"^3 frames, 48x80, steps 2, threads 1, CPU time, device cpu, 0 warm-up fit, 7 timed fits per case$", out)
    ((fit, hold, ratio, median, low, high),) = _find(
        rf"^ +demo +standin +degraded \| +({NUM}) +({NUM}) +({NUM}) \|.*\| ({NUM}) \[({NUM})-({NUM})\] \|", out
    )
    fit, hold, ratio = _float(fit), _float(hold), _float(ratio)
    assert fit > 0 and hold > 0 and ratio == pytest.approx(fit / hold, abs=0.01)
    assert 0 < _float(low) <= _float(median) <= _float(high)  # seconds per frame
    ((median_ratio, max_ratio),) = _find(rf"^ratio fit/hold over 1 cases: median ({NUM}), max ({NUM})", out)
    assert _float(median_ratio) == _float(max_ratio) == ratio


def check_load_ram(out: str) -> None:
    ((weights,),) = _find(rf"^weights: ({NUM}) MiB \(bf16, 2 layers x 2 branches, dim 384\)$", out)
    assert _float(weights) > 0
    ((load, base),) = _find(
        rf"^peak RSS above baseline during load: {NUM} MiB = ({NUM})x the weights \(baseline ({NUM})", out
    )
    ((touched,),) = _find(rf"^after touching every weight \(as inference does\): {NUM} MiB = ({NUM})x", out)
    assert _float(load) > 0 and _float(base) > 0 and _float(touched) >= _float(load)  # the peak only grows


def check_memory_modes(out: str) -> None:
    rows = _find(rf"^ +(bf16|fp8) +(\d+) +({NUM}) +({NUM})$", out, 6)
    assert [(storage, int(n)) for storage, n, *_ in rows] == [(s, n) for s in ("bf16", "fp8") for n in (0, 1, 2)]
    assert all(_float(gpu) >= 0 and _float(cpu) >= 0 for *_, gpu, cpu in rows)
    ((fp8, smallest),) = _find(rf"^fp8 / bf16 resident = ({NUM}); smallest mode / bf16 = ({NUM});", out)
    assert 0 < _float(smallest) <= _float(fp8) < 1


def check_motion_map(out: str) -> None:
    _find(r"^clip: 2 frames at 64x112, 6890 vertices, 13684 faces", out)
    for backend in ("torch", "torch_depth"):
        ((median, per_frame, verdict),) = _find(
            rf"^  {backend}\s*: whole clip median ({NUM}) s .*; per frame ({NUM}) ms; median <= 15 s: (PASS|FAIL)$", out
        )
        assert _float(median) >= 0 and _float(per_frame) > 0 and verdict == "PASS"  # the clip: 2 decimals of a second
    _median(out, "torch_depth/torch")
    ((torch_px, depth_px),) = _find(
        r"^pixels covered in the warm-up chunk: \{'torch': (\d+), 'torch_depth': (\d+)\}$", out
    )
    assert int(torch_px) == int(depth_px) > 0  # the depth alone covers the pixels the motion map does


def check_sampler_overhead(out: str) -> None:
    _find(r"^preset tiny, 2x4x4 latents, 2 unipc steps with CFG, cpu, 1 threads, CPU time, 7 repeats$", out)
    loop, forward, outside = (_median(out, name) for name in ("loop per step", "transformer", "outside it"))
    assert forward < loop and outside < loop
    assert 0 < _median(out, "outside/total") < 1
    _verdict(out, "outside/total")
    assert _float(_find(rf"peak host RAM : ({NUM}) MiB", out)[0][0]) > 0


def check_smpl(out: str) -> None:
    _find(r"^SMPL forward, 4 frames, cpu, 1 threads, CPU time$", out)
    _median(out, "BodyModel")
    assert _find(r"^  verdict       : median <= 0\.1 s: (PASS|FAIL)$", out)[0][0] == "PASS"


def check_step_cache(out: str) -> None:
    _find(r"training the tiny preset, all parameters, 2 synthetic clips 5x32x32", out)
    curve = _find(rf"^ +(\d+) \| ({NUM}) \(({NUM}) \+ ({NUM}) \+ ({NUM})\) \|", out, 2)
    assert [int(row[0]) for row in curve] == [2, 4]
    for _, total, *parts in curve:
        assert _float(total) > 0 and _float(total) == pytest.approx(sum(_float(p) for p in parts), abs=0.005)
    ((rgb, motion),) = _find(
        rf"^solver error for scale \(4 vs 8 steps, uncached\): RGB ({NUM}) %, motion ({NUM}) %", out
    )
    assert _float(rgb) > 0 and _float(motion) > 0
    assert 0 < _float(_find(rf"^block stack share of an uncached loop: ({NUM}) %", out)[0][0]) <= 100
    rows = {
        name: row
        for name, *row in _find(
            rf"^\| ([\w.]+) \| (\d+) / 4 \| ({NUM})x \| (.+?) \| ({NUM}) \| ({NUM}) % \| ({NUM}) % "
            rf"\| ({NUM}) mm \| (-|PASS|FAIL) \|$",
            out,
            3,
        )
    }
    assert list(rows) == ["off", "0", "0.1"]
    for name, (computed, fewer, speed, bound, rgb, motion, joints, target) in rows.items():
        assert 0 < int(computed) <= 4 and _float(fewer) == pytest.approx(4 / int(computed), abs=0.005)
        assert _float(bound) >= 1 and min(_float(rgb), _float(motion), _float(joints)) >= 0
        if name == "off":
            assert speed == "1 (reference)" and _float(rgb) == _float(motion) == _float(joints) == 0 and target == "-"
        else:
            median, low, high = (_float(v) for v in re.fullmatch(rf"({NUM}) \(({NUM})-({NUM})\)", speed).groups())
            assert 0 < low <= median <= high
    assert rows["0"][0] == "4" and rows["0"][4] == "0.000"  # threshold 0 computes every step: no deviation


def check_train_memory(out: str) -> None:
    _find(r"^tiny: \d+\.\d\dB parameters; 64x64x5 -> 8 tokens per branch;", out)
    rows = _find(rf"^ +([12]) +(\w+) +({NUM})B((?: +{NUM}){{5}}) +(yes|no)$", out, 18)
    strategies = ["ddp", "ddp_8bit", "zero2", "zero2_cpu", "zero3", "zero3_cpu", "fsdp2", "fsdp2_cpu", "lora"]
    assert [(int(stage), name) for stage, name, *_ in rows] == [(s, n) for s in (1, 2) for n in strategies]
    for *_, trained, gib, _fits in rows:
        assert _float(trained) >= 0 and all(_float(v) >= 0 for v in gib.split())


def check_vae_memory(out: str) -> None:
    rows = _find(
        rf"^ +128x128 +(untiled|tiled): working memory ({NUM}) GiB, (\d+) frames \(one run, ({NUM}) CPU s", out, 2
    )
    assert [mode for mode, *_ in rows] == ["untiled", "tiled"]
    assert all(_float(gib) >= 0 and int(frames) == 1 and _float(seconds) >= 0 for _, gib, frames, seconds in rows)
    _find(rf"^pixels x1\.0: untiled memory x({NUM}), tiled memory x({NUM})$", out)
    assert _float(_find(rf"^at 128x128: tiled / untiled working memory = ({NUM})$", out)[0][0]) > 0


def check_capture(out: str) -> None:
    _find(r"^noisy oracle: 3 deg per joint, 2 cm at the root, 5% outlier frames x8; 16 frames at 30 fps, 64x112$", out)
    rows = _find(
        rf"^ +(demo|kick) \| +({NUM}) +({NUM}) +({NUM}) \| +({NUM}) +({NUM}) +({NUM}) \| +({NUM}) +({NUM}) \| "
        rf" *({NUM}) +({NUM}) \| "
        rf"(\d+) foot-frames planted; outliers \[[\d, ]+\] confidence ({NUM}) max, others ({NUM}) median$",
        out,
        2,
    )
    for name, *figures, raw_skate, skate, _planted, outlier, usual in rows:
        raw, smooth, ratio, raw_accel, accel, accel_ratio, raw_lag, lag = (_float(v) for v in figures)
        if name == "kick":  # the left foot stands throughout: smoothing and locking keep it stiller
            assert 0 <= _float(skate) < _float(raw_skate) / 2
        assert 0 < smooth < raw and ratio == pytest.approx(smooth / raw, abs=0.01), name  # smoothing helps
        assert 0 < accel < raw_accel / 3 and accel_ratio < 1 / 3, name
        assert abs(lag) < 0.5 and abs(raw_lag) < 0.5, name  # no lag
        assert _float(outlier) < 0.5 < _float(usual) <= 1, name  # outlier frames are distrusted
    assert int(rows[1][-3]) > 0  # kick: the planted foot is found
    (verdicts,) = _find(
        rf"^overall: MPJPE {NUM} -> {NUM} mm \(x{NUM}, target <= 0\.80: (PASS)\); acceleration error {NUM} -> "
        rf"{NUM} mm/frame\^2 \({NUM}x lower, target >= 3: (PASS)\); lag at most {NUM} frames \(target 0: (PASS)\)$",
        out,
    )
    assert verdicts == ("PASS", "PASS", "PASS")
    _find(r"^per-frame estimator: HMR 2\.0 tiny, random weights, 4 frames of 480x640, CPU time, threads 1", out)
    rates = _find(rf"^  batch +(\d+): +({NUM}) frames/s \(\d+ ms/frame\)$", out, 2)
    assert [int(b) for b, _ in rates] == [4, 1] and all(_float(r) > 0 for _, r in rates)


def check_real_size(out: str) -> None:
    files = _find(rf"^file\[(\w+):[^\]]+\]: ({NUM}) GiB, (\d+) tensors, (?:written in {NUM} s|cached)$", out, None)
    assert {kind for kind, *_ in files} == {"comfy", "diffusers", "comovi", "vae"}
    assert all(_float(gib) >= 0 and int(n) > 0 for _, gib, n in files)  # tiny: 0.00 GiB
    loads = _find(
        rf"^load\[(comfy\+comovi fp8|diffusers\+comovi fp8|comfy\+comovi bf16 -> meta)\]: "
        rf"wall ({NUM}) s, cpu ({NUM}) s, peak ({NUM}) GiB \(anon ({NUM}), file ({NUM})\), resident ({NUM}) GiB",
        out,
        3,
    )
    for _, wall, cpu, peak, anon, file, resident in loads:
        assert _float(wall) >= 0 and _float(cpu) >= 0 and _float(peak) >= _float(anon) > 0 and _float(file) >= 0
        assert _float(resident) >= 0
    patchers = _find(r"^patcher\[[^\]]+\]: size .* GiB: (equal)$", out, 2)  # the ModelPatcher's size is the truth
    assert patchers == [("equal",), ("equal",)]
    (step,) = _find(rf"^step\[5x64x64 fp8\]: denoise ({NUM}) s, .*finite (yes), motion (3d_head), guidance 6$", out)
    assert _float(step[0]) >= 0  # tiny: 0.0 s on an idle machine
    (vae,) = _find(rf"^vae\[5x64x64\]: encode ({NUM}) s, decode ({NUM}) s, .*tiled, finite (yes)$", out)
    assert _float(vae[0]) >= 0 and _float(vae[1]) >= 0  # tiny: may print 0.0 s
    _find(rf"^summary\[tiny\]: highest load peak {NUM} GiB, highest of all {NUM} GiB \(target 16 GiB\): ok$", out)


CHECKS = {
    "bench_block_swap.py": check_block_swap,
    "bench_capture.py": check_capture,
    "bench_dual_step.py": check_dual_step,
    "bench_estimator.py": check_estimator,
    "bench_fit_motion.py": check_fit_motion,
    "bench_load_ram.py": check_load_ram,
    "bench_memory_modes.py": check_memory_modes,
    "bench_motion_map.py": check_motion_map,
    "bench_real_size.py": check_real_size,
    "bench_sampler_overhead.py": check_sampler_overhead,
    "bench_smpl.py": check_smpl,
    "bench_step_cache.py": check_step_cache,
    "bench_train_memory.py": check_train_memory,
    "bench_vae_memory.py": check_vae_memory,
}


def test_every_benchmark_has_checks():
    assert SCRIPTS, "no benchmarks found"
    assert sorted(CHECKS) == SCRIPTS, "a benchmark without checks here, or checks of one that is gone"


@pytest.mark.parametrize("script", SCRIPTS)
def test_smoke(script, smokes):
    status, out, err, seconds, cpu = smokes[script]
    assert status == 0, f"{script} --smoke exited {status}:\n{out}\n{err[-4000:]}"
    assert script in CHECKS, f"{script}: add the checks of its printed figures to CHECKS"
    CHECKS[script](out)
    print(f"{script} --smoke: {seconds:.1f} s wall, {cpu:.1f} s CPU")
