"""benchmarks/timing.py: cases interleaved with alternating order, warm-up untimed, ratios per repeat, >= 7 repeats."""

from __future__ import annotations

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
