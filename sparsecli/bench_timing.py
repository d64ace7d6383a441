"""The timed rounds: models interleaved block by block, every run and round checked for interference.

Two checks, both recorded:
- per run: the time our threads spent waiting for a CPU during the run (schedstat run delay, Linux).
  A run that waited more than 50 us + 5% of its length lost its CPU to someone else; it is left out
  of the statistics, and a round in which any model kept fewer than 30% of its block's runs is contended.
- per round: the CPU other processes used (system busy time from /proc/stat minus this process's own
  CPU time), in cores. Where the run-delay clock is unavailable, a round is contended when that load
  exceeds the cores the session leaves idle plus `max_foreign_load`; where it is available the load is
  recorded only, since the clock tells whether those processes ran instead of ours or beside them.
- per round, afterwards: whether the machine itself ran slow (bench_stats.slow_rounds: a model's block
  median well above its fast blocks'), which co-tenants of a virtual machine cause out of sight of both
  checks above.
Contended and slow rounds are dropped and repeated, within a budget of twice the planned rounds and time.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from sparsecli import bench_stats
from sparsecli.bench_system import WaitClock

WAIT_ABS_NS = 50_000
WAIT_REL = 0.05
MIN_CLEAN_SHARE = 0.3


@dataclass
class Block:
    wall_ms: np.ndarray
    clean: np.ndarray  # bool per run: our threads did not wait for a CPU during it
    seconds: float  # wall time of the whole block, gaps between runs included
    median_ms: float  # of wall_ms: what the per-round ratios and the slow-machine check compare


class Plan:
    """How many rounds and how much time to time, and when to stop.

    Stops when `rounds` clean rounds holding `seconds` of timing exist; or when twice that has been
    timed; or when the planned amount has been timed and not one round was clean (repeating would not help).
    """

    def __init__(self, rounds: int, seconds: float | None):
        self.rounds, self.seconds = rounds, seconds
        self.clean_rounds = self.timed_rounds = 0
        self.clean_s = self.timed_s = 0.0

    def add(self, clean: bool, wall: float) -> None:
        self.timed_rounds += 1
        self.timed_s += wall
        if clean:
            self.clean_rounds += 1
            self.clean_s += wall

    def _reached(self, rounds: int, seconds: float, factor: int = 1) -> bool:
        return rounds >= factor * self.rounds and (self.seconds is None or seconds >= factor * self.seconds)

    def done(self) -> bool:
        if self._reached(self.clean_rounds, self.clean_s) or self._reached(self.timed_rounds, self.timed_s, 2):
            return True
        return self._reached(self.timed_rounds, self.timed_s) and self.clean_rounds == 0

    def progress(self) -> tuple[int, int]:
        share = self.clean_rounds / self.rounds
        if self.seconds:
            share = min(share, self.clean_s / self.seconds)
        return int(100 * min(1.0, share)), 100


def time_rounds(
    runners: Sequence[Callable[[], object]],
    clock: WaitClock,
    per_block: Sequence[int],
    plan: Plan,
    allowed_foreign: float,
    block_s: float | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[list[Block]], list[float | None], list[bool]]:
    """Blocks[model][round], each round's foreign load and cleanliness; `block_s` re-aims block sizes per round.

    A round counts toward the plan when it is clean and, judged against the rounds so far, not slow;
    the caller judges slowness again against all rounds (bench_stats.slow_rounds).

    The sessions share one thread pool (bench_session.share_threads), so blocks follow each other with no
    pause: the pool's workers spin between calls of any model, as they do in a loop over one.
    """
    per_block = list(per_block)
    blocks: list[list[Block]] = [[] for _ in runners]
    medians: list[list[float]] = [[] for _ in runners]
    loads: list[float | None] = []
    clean_rounds: list[bool] = []
    gc_was_enabled = gc.isenabled()
    gc.disable()  # a collection inside a timed run would be billed to whichever model was running
    try:
        while not plan.done():
            order = range(len(runners)) if len(loads) % 2 == 0 else reversed(range(len(runners)))
            start = bench_stats.cpu_sample()
            for i in order:
                blocks[i].append(_block(runners[i], clock, per_block[i]))
                medians[i].append(blocks[i][-1].median_ms)
            end = bench_stats.cpu_sample()
            load = bench_stats.foreign_load(start, end)
            if clock.available:
                clean = all(b[-1].clean.mean() >= MIN_CLEAN_SHARE for b in blocks)
            else:
                clean = load is None or load <= allowed_foreign
            loads, clean_rounds = [*loads, load], [*clean_rounds, clean]
            plan.add(clean and not bench_stats.slow_rounds(medians)[-1], end.wall - start.wall)
            if progress:
                progress(*plan.progress())
            if block_s:
                per_block = [_reaim(k, b[-1], block_s) for k, b in zip(per_block, blocks, strict=True)]
    finally:
        if gc_was_enabled:
            gc.enable()
    return blocks, loads, clean_rounds


def _reaim(runs: int, last: Block, block_s: float) -> int:
    """Runs for the next block: halfway (geometrically) to what would have filled `block_s` last time."""
    aim = block_s * last.wall_ms.size / max(last.seconds, 1e-9)
    return max(1, round((runs * aim) ** 0.5))


def _block(run: Callable[[], object], clock: WaitClock, runs: int) -> Block:
    """`runs` timed calls, after one untimed call that refills the caches the other models used: steady-state
    calls are what is measured, as in a loop."""
    wall = np.empty(runs, dtype=np.int64)
    waited = np.zeros(runs, dtype=np.int64)
    run()
    start = time.perf_counter()
    if clock.available:
        for j in range(runs):
            w0 = clock.ns()
            t0 = time.perf_counter_ns()
            run()
            wall[j] = time.perf_counter_ns() - t0
            waited[j] = clock.ns() - w0
    else:
        for j in range(runs):
            t0 = time.perf_counter_ns()
            run()
            wall[j] = time.perf_counter_ns() - t0
    seconds = time.perf_counter() - start
    wall_ms = wall / 1e6
    return Block(wall_ms, waited <= WAIT_ABS_NS + WAIT_REL * wall, seconds, float(np.median(wall_ms)))


def samples(model_blocks: list[Block], kept: list[int], contended: bool) -> tuple[np.ndarray, list[float]]:
    """A model's latencies (ms) from the kept rounds, and its per-round medians.

    Clean runs only, unless the run is contended: then every run, since some models may have no clean runs.
    """
    use = [model_blocks[r].wall_ms if contended else model_blocks[r].wall_ms[model_blocks[r].clean] for r in kept]
    return np.concatenate(use), [float(np.median(u)) for u in use]
