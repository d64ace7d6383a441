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
  median well above its fast blocks', or the canary's above its record on this machine), which
  co-tenants of a virtual machine cause out of sight of both checks above.
Contended and slow rounds are dropped and repeated, within a budget of twice the planned rounds and time.
After a round slower than the records, only the runners with a record are timed until they are back
within the margin of it, for at most the plan's wait budget: a slow spell is waited out, not measured.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterable, Sequence
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
    Waiting for a slow machine to recover is budgeted apart: at most `wait_s` seconds in all.
    """

    def __init__(self, rounds: int, seconds: float | None, wait_s: float = 0.0):
        self.rounds, self.seconds, self.wait_s = rounds, seconds, wait_s
        self.clean_rounds = self.timed_rounds = 0
        self.clean_s = self.timed_s = self.waited_s = 0.0

    def may_wait(self) -> bool:
        return self.waited_s < self.wait_s

    def waited(self, seconds: float) -> None:
        self.waited_s += seconds

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
    progress: Callable[[int, int, bool], None] | None = None,
    records: Sequence[float | None] | None = None,
) -> tuple[list[list[Block]], list[float | None], list[bool]]:
    """Blocks[model][round], each round's foreign load and cleanliness; `block_s` re-aims block sizes per round.

    A round counts toward the plan when it is clean and, judged against the rounds so far and the
    `records` (a runner's best block median on this machine, where known), not slow; the caller judges
    slowness again against all rounds (bench_stats.slow_rounds). After a slow round, and before the
    first, the runners with a record are timed alone until back at their record speed (_wait_for_record).

    The sessions share one thread pool (bench_session.share_threads), so blocks follow each other with no
    pause: the pool's workers spin between calls of any model, as they do in a loop over one.
    """
    per_block = list(per_block)
    blocks: list[list[Block]] = [[] for _ in runners]
    medians: list[list[float]] = [[] for _ in runners]  # of the blocks, kept alongside: judged every round
    loads: list[float | None] = []
    clean_rounds: list[bool] = []
    records = list(records or [None] * len(runners))
    behind = True  # before the first round: the machine may already be slow
    gc_was_enabled = gc.isenabled()
    gc.disable()  # a collection inside a timed run would be billed to whichever model was running
    try:
        while not plan.done():
            if behind:
                _wait_for_record(runners, records, per_block, clock, plan, progress)
            order = range(len(runners)) if len(loads) % 2 == 0 else reversed(range(len(runners)))
            load, clean, wall = _round(runners, clock, per_block, order, blocks, allowed_foreign)
            for model_medians, model_blocks in zip(medians, blocks, strict=True):
                model_medians.append(model_blocks[-1].median_ms)
            loads, clean_rounds = [*loads, load], [*clean_rounds, clean]
            behind = bench_stats.slow_rounds(medians, records=records)[-1]
            plan.add(clean and not behind, wall)
            if progress:
                progress(*plan.progress(), False)
            if block_s:
                per_block = [_reaim(k, b[-1], block_s) for k, b in zip(per_block, blocks, strict=True)]
    finally:
        if gc_was_enabled:
            gc.enable()
    return blocks, loads, clean_rounds


def _round(
    runners: Sequence[Callable[[], object]],
    clock: WaitClock,
    per_block: Sequence[int],
    order: Iterable[int],
    blocks: list[list[Block]],
    allowed_foreign: float,
) -> tuple[float | None, bool, float]:
    """One block per runner in `order`, appended to `blocks`; the round's foreign load, cleanliness and wall time."""
    start = bench_stats.cpu_sample()
    for i in order:
        blocks[i].append(_block(runners[i], clock, per_block[i]))
    end = bench_stats.cpu_sample()
    load = bench_stats.foreign_load(start, end)
    if clock.available:
        clean = all(b[-1].clean.mean() >= MIN_CLEAN_SHARE for b in blocks)
    else:
        clean = load is None or load <= allowed_foreign
    return load, clean, end.wall - start.wall


def _wait_for_record(
    runners: Sequence[Callable[[], object]],
    records: Sequence[float | None],
    per_block: Sequence[int],
    clock: WaitClock,
    plan: Plan,
    progress: Callable[[int, int, bool], None] | None,
) -> None:
    """Time blocks of the runners that have a record until each is within RECORD_MARGIN of it, or the plan's
    wait budget is spent. Measured on a 2-vCPU guest: the machine ran 1.33-1.5x slow in spells of 9-70 s
    between quiet ones of 8-36 s; rounds taken in a spell read the small model's batch-1 speedup 20% low."""
    limits = {i: (1.0 + bench_stats.RECORD_MARGIN) * r for i, r in enumerate(records) if r is not None}
    while limits and plan.may_wait():
        start = time.perf_counter()
        limits = {i: cap for i, cap in limits.items() if _block(runners[i], clock, per_block[i]).median_ms > cap}
        plan.waited(time.perf_counter() - start)
        if progress:
            progress(*plan.progress(), bool(limits))


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
