"""Shared machinery of the timing benchmarks: fixed threads, CPU time (or CUDA events), warm-up, repeats,
interleaved cases, and verdicts on the median of per-repeat ratios.

Why: on a shared machine wall time measures the neighbours as much as the code (one run of a busy 2-core
box printed a dual/single step ratio of 1.63 by median and 3.38 best/best). CPU time of this process is
what the code costs; running the compared cases in turn within each repeat (A B, B A, A B, ...) makes
slow phases of the machine hit them alike; the ratio of the two within one repeat cancels what is left,
and its median over >= 7 repeats, with its spread, is the figure to judge.

    p = argparse.ArgumentParser(); add_timing_args(p); args = p.parse_args(); set_threads(args.threads)
    samples = interleaved({"ours": run_a, "theirs": run_b}, args.repeats, args.warmup, clock_for(device))
    print_case("ours", samples["ours"]); print_ratio("ours/theirs", ratios(samples["ours"], samples["theirs"]), 1.0)

Every benchmark also takes ``--smoke`` (``parse_args``): tiny sizes that run in seconds on a CPU through the same
code as the full run, so that the benchmarks keep working (``tests/test_benchmarks.py`` runs them all).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

MIN_REPEATS = 7


def add_timing_args(parser: argparse.ArgumentParser, repeats: int = MIN_REPEATS, warmup: int = 1) -> None:
    """--threads (default 1), --repeats (at least 7), --warmup."""
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (torch.set_num_threads; fixed so CPU times compare across runs and machines)",
    )
    parser.add_argument("--repeats", type=int, default=repeats, help=f"timed repeats per case (at least {MIN_REPEATS})")
    parser.add_argument("--warmup", type=int, default=warmup, help="untimed runs of each case first")


def parse_args(
    parser: argparse.ArgumentParser, smoke: dict[str, object], argv: list[str] | None = None
) -> argparse.Namespace:
    """``parser.parse_args`` with ``--smoke`` added: it makes ``smoke`` (argument dest -> value) the defaults, so a
    tiny run that takes seconds on a CPU goes through the same code as the full one; flags given still win."""
    options = {a.dest: a.option_strings[0] for a in parser._actions if a.option_strings}
    unknown = sorted(set(smoke) - set(options))
    if unknown:
        raise ValueError(f"smoke sizes for arguments the parser does not have: {unknown}")

    def shown(value):
        return " ".join(map(str, value)) if isinstance(value, (list, tuple)) else value

    sizes = ", ".join(options[d] if v is True else f"{options[d]} {shown(v)}" for d, v in smoke.items())
    parser.add_argument(
        "--smoke",
        action="store_true",
        help=f"tiny sizes that run in seconds on a CPU, through the same code (defaults become: {sizes})",
    )
    args = parser.parse_args(argv)
    if args.smoke:
        parser.set_defaults(**smoke)
        args = parser.parse_args(argv)
    return args


def check_repeats(repeats: int) -> None:
    if repeats < MIN_REPEATS:
        raise SystemExit(f"--repeats {repeats}: at least {MIN_REPEATS} are needed for a median and a spread")


def set_threads(threads: int) -> None:
    """Fix torch's intra-op threads (and inter-op threads when still possible)."""
    if threads < 1:
        raise SystemExit(f"--threads must be >= 1, got {threads}")
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(threads)
    except RuntimeError:  # only allowed before the first parallel work; intra-op threads are what matter here
        pass


class CpuClock:
    """CPU seconds of this process, all threads (``time.process_time``): with 1 thread, the work itself."""

    kind = "CPU time"

    def mark(self) -> float:
        return time.process_time()

    def elapsed(self, start: float, stop: float) -> float:
        return stop - start

    def time(self, fn: Callable[[], object]) -> float:
        start = self.mark()
        fn()
        return self.elapsed(start, self.mark())


class CudaClock(CpuClock):
    """GPU seconds between CUDA events (the device's own clock); ``time`` first waits for queued work."""

    kind = "CUDA events"

    def mark(self) -> torch.cuda.Event:
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def elapsed(self, start: torch.cuda.Event, stop: torch.cuda.Event) -> float:
        stop.synchronize()
        return start.elapsed_time(stop) / 1000

    def time(self, fn: Callable[[], object]) -> float:
        torch.cuda.synchronize()
        return super().time(fn)


def clock_for(device: str | torch.device) -> CpuClock | CudaClock:
    return CudaClock() if torch.device(device).type == "cuda" else CpuClock()


def interleaved(
    cases: dict[str, Callable[[], object]], repeats: int, warmup: int, clock: CpuClock | CudaClock
) -> dict[str, list[float]]:
    """Seconds per repeat of every case. Each repeat runs every case once; the order alternates between
    repeats (A B, B A, ...) so neither case always runs first. Warm-up runs are untimed."""
    check_repeats(repeats)
    names = list(cases)
    for _ in range(warmup):
        for name in names:
            cases[name]()
    samples: dict[str, list[float]] = {name: [] for name in names}
    for i in range(repeats):
        for name in names if i % 2 == 0 else names[::-1]:
            samples[name].append(clock.time(cases[name]))
    return samples


def ratios(numerator: list[float], denominator: list[float]) -> list[float]:
    """Per-repeat ratios (the cases of one repeat ran back to back)."""
    return [a / b for a, b in zip(numerator, denominator)]


def spread(values: list[float]) -> tuple[float, float, float, float, float]:
    """(median, first quartile, third quartile, min, max)."""
    q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return median, q1, q3, min(values), max(values)


def describe(values: list[float], scale: float = 1e3, unit: str = "ms", digits: int = 1) -> str:
    median, q1, q3, low, high = (v * scale for v in spread(values))
    f, u = f"{{:.{digits}f}}", f" {unit}" if unit else ""
    return (
        f"median {f.format(median)}{u}  IQR {f.format(q1)}-{f.format(q3)}  "
        f"min-max {f.format(low)}-{f.format(high)}  (n={len(values)})"
    )


def print_case(name: str, seconds: list[float], width: int = 14) -> None:
    print(f"  {name:<{width}}: {describe(seconds)}")


def verdict(values: list[float], target: float, unit: str = "", higher_is_better: bool = False) -> str:
    """PASS/FAIL of the median against ``target``, saying so."""
    median = statistics.median(values)
    ok = median >= target if higher_is_better else median <= target
    bound = f"{'>=' if higher_is_better else '<='} {target:g}{' ' + unit if unit else ''}"
    return f"median {bound}: {'PASS' if ok else 'FAIL'}"


def print_ratio(name: str, values: list[float], target: float | None = None, width: int = 14) -> None:
    """The per-repeat ratio's median and spread, and the verdict on that median."""
    line = f"  {name:<{width}}: {describe(values, scale=1.0, unit='', digits=3)}"
    print(line + (f"; {verdict(values, target)}" if target is not None else ""))
