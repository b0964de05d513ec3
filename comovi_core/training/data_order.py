"""Which sample a training micro-batch reads: epochs of shuffled shards, each shuffled within.

Samples live in shards (a prepared cache's files; the clips held in memory are one shard). Sample number ``index``
(counted over the whole run: optimizer step, process and accumulation micro-batch, see ``sample_index``) falls in
epoch ``index // total``; each epoch visits every sample once: the shards in an order drawn from (seed, epoch), and
the samples of each shard in an order drawn from (seed, epoch, shard). The position is a pure function of the
index, so a resumed run reads exactly what an unbroken one would, and a reader walks through one shard at a time.
"""

from __future__ import annotations

import numpy as np


def sample_index(step: int, process: int, processes: int, grad_accum: int, micro_batch: int) -> int:
    """The run-wide number of micro-batch ``micro_batch`` of ``process`` at optimizer step ``step`` (from 1). N
    processes with accumulation A read the same samples as one process with accumulation N*A."""
    return ((step - 1) * processes + process) * grad_accum + micro_batch


def _permutation(n: int, *key: int) -> np.ndarray:
    return np.random.default_rng(np.random.SeedSequence([*key])).permutation(n)


class EpochOrder:
    """``order(index) -> (shard, item)`` for shards of ``sizes`` samples (empty shards allowed, never visited)."""

    def __init__(self, seed: int, sizes: list[int]):
        self.seed, self.sizes, self.total = seed, list(sizes), int(sum(sizes))
        if self.total == 0:
            raise ValueError("EpochOrder needs at least one sample")
        self._epoch, self._shards, self._ends = None, None, None
        self._within: tuple[int, int, np.ndarray] | None = None  # (epoch, shard, order of its items)

    def _start_epoch(self, epoch: int) -> None:
        self._epoch = epoch
        self._shards = _permutation(len(self.sizes), self.seed, epoch)
        self._ends = np.cumsum([self.sizes[s] for s in self._shards])

    def __call__(self, index: int) -> tuple[int, int]:
        epoch, position = divmod(index, self.total)
        if epoch != self._epoch:
            self._start_epoch(epoch)
        slot = int(np.searchsorted(self._ends, position, side="right"))
        shard = int(self._shards[slot])
        offset = position - (int(self._ends[slot - 1]) if slot else 0)
        if self._within is None or self._within[:2] != (epoch, shard):
            self._within = (epoch, shard, _permutation(self.sizes[shard], self.seed, epoch, shard))
        return shard, int(self._within[2][offset])
