"""benchmarks/timing.py: cases interleaved with alternating order, warm-up untimed, ratios per repeat, >= 7 repeats."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import timing


class _CountingClock(timing.CpuClock):
    """Each timed call 'takes' the next value of a counter, so the samples show the order of the calls."""

    def __init__(self):
        self.calls = 0

    def time(self, fn):
        fn()
        self.calls += 1
        return float(self.calls)


def test_cases_alternate_order_and_warmup_is_untimed():
    order = []
    cases = {"a": lambda: order.append("a"), "b": lambda: order.append("b")}
    samples = timing.interleaved(cases, 7, 2, _CountingClock())
    assert order == ["a", "b"] * 2 + ["a", "b", "b", "a"] * 3 + ["a", "b"]  # 2 warm-ups, then AB BA AB ...
    assert samples == {"a": [1.0, 4.0, 5.0, 8.0, 9.0, 12.0, 13.0], "b": [2.0, 3.0, 6.0, 7.0, 10.0, 11.0, 14.0]}
    assert timing.ratios(samples["a"], samples["b"])[:2] == [0.5, 4 / 3]


def test_spread_verdict_and_minimum_repeats():
    values = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 100.0]
    assert timing.spread(values) == (4.0, 2.5, 5.5, 1.0, 100.0)  # one outlier moves neither median nor IQR much
    assert timing.verdict(values, 4.0).endswith("PASS") and timing.verdict(values, 3.9, "s") == "median <= 3.9 s: FAIL"
    with pytest.raises(SystemExit, match="at least 7"):
        timing.interleaved({"a": lambda: None}, 6, 0, timing.CpuClock())


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    p.add_argument("--frames", type=int, default=81)
    p.add_argument("--sizes", nargs="+", default=["352x640"])
    timing.add_timing_args(p)
    return p


def test_smoke_sizes_become_defaults_and_flags_still_win(capsys):
    smoke = {"frames": 2, "sizes": ["64x64"], "repeats": 7}
    plain = timing.parse_args(_parser(), smoke, [])
    assert (plain.smoke, plain.frames, plain.sizes, plain.repeats) == (False, 81, ["352x640"], 7)
    args = timing.parse_args(_parser(), smoke, ["--smoke", "--frames", "5"])
    assert (args.smoke, args.frames, args.sizes, args.repeats) == (True, 5, ["64x64"], 7)
    with pytest.raises(SystemExit):
        timing.parse_args(_parser(), smoke, ["--help"])
    assert "(defaults become: --frames 2, --sizes 64x64, --repeats 7)" in " ".join(capsys.readouterr().out.split())
    with pytest.raises(ValueError, match=r"\['height'\]"):
        timing.parse_args(_parser(), {"height": 64}, [])
