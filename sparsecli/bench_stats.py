"""Statistics for the benchmark harness: latency summaries, bootstrap intervals, and contention accounting.

Rounds are the unit of resampling: each round times every model once, back to back, so a ratio taken
inside a round shares the machine's state. Intervals come from resampling whole rounds.
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95
RESAMPLES = 2000
NOISY_WIDTH = 0.10  # an interval wider than 10% of its estimate is flagged noisy
NOISY_CONTROL = 0.05  # so is a run whose control session is more than 5% off the baseline
SLOW_MARGIN = 0.15  # a round whose blocks ran this much slower than their model's fast blocks is dropped
# ... or whose canary ran this much slower than its record on this machine. Tighter, since the record is a
# steady reference: in a 300 s trace (2 s windows) structured-resnet's batch-1 speedup read 2.59-2.86x while
# the canary ran within 1.11x of its record, 2.45-2.58x at 1.13-1.16x, and ~2.07x at 1.30x.
RECORD_MARGIN = 0.10


def summarize(samples_ms: Sequence[float], batch: int) -> dict[str, float]:
    """p50/p90/p99/mean/std/min (ms), n, and throughput in items/s (batch / mean latency)."""
    a = np.asarray(samples_ms, dtype=float)
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return {
        "p50": float(p50),
        "p90": float(p90),
        "p99": float(p99),
        "mean": float(a.mean()),
        "std": float(a.std(ddof=1)) if a.size > 1 else 0.0,
        "min": float(a.min()),
        "n": int(a.size),
        "throughput": float(batch * 1000.0 / a.mean()),
    }


def _percentile_interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(values, [tail, 1.0 - tail])
    return float(low), float(high)


def paired_ratio(
    base_rounds: Sequence[float],
    model_rounds: Sequence[float],
    *,
    confidence: float = CONFIDENCE,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> dict[str, float]:
    """Speedup of a model over the baseline from per-round block medians (ms), paired by round.

    Estimate: the median over rounds of base/model. Interval: percentile bootstrap over rounds.
    """
    base = np.asarray(base_rounds, dtype=float)
    model = np.asarray(model_rounds, dtype=float)
    if base.shape != model.shape or base.size == 0:
        raise ValueError("paired_ratio needs the same, non-zero number of rounds for both models")
    logs = np.log(base / model)
    point = float(np.exp(np.median(logs)))
    if logs.size == 1:
        return {"estimate": point, "low": point, "high": point, "confidence": confidence}
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, logs.size, size=(resamples, logs.size))
    low, high = _percentile_interval(np.exp(np.median(logs[picks], axis=1)), confidence)
    return {"estimate": point, "low": low, "high": high, "confidence": confidence}


def unpaired_change(
    before_rounds: Sequence[float],
    after_rounds: Sequence[float],
    *,
    confidence: float = CONFIDENCE,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> dict[str, float]:
    """Relative change after/before - 1 of the median round time of two separate runs, with a bootstrap interval.

    Positive is slower. Each run's rounds are resampled on their own (the runs share no rounds).
    """
    before = np.asarray(before_rounds, dtype=float)
    after = np.asarray(after_rounds, dtype=float)
    if before.size == 0 or after.size == 0:
        raise ValueError("unpaired_change needs rounds from both runs")
    point = float(np.median(after) / np.median(before) - 1.0)
    rng = np.random.default_rng(seed)
    b = np.median(before[rng.integers(0, before.size, size=(resamples, before.size))], axis=1)
    a = np.median(after[rng.integers(0, after.size, size=(resamples, after.size))], axis=1)
    low, high = _percentile_interval(a / b - 1.0, confidence)
    return {"estimate": point, "low": low, "high": high, "confidence": confidence}


def relative_width(interval: dict[str, float]) -> float:
    """(high - low) / estimate: 0.10 means the interval spans 10% of the estimate."""
    return float((interval["high"] - interval["low"]) / interval["estimate"])


def is_noisy(interval: dict[str, float], control: dict[str, float] | None = None) -> bool:
    """A ratio is noisy when its interval is wide or the run's control session strays from 1.0."""
    if relative_width(interval) > NOISY_WIDTH:
        return True
    return control is not None and abs(control["estimate"] - 1.0) > NOISY_CONTROL


def parse_percent(text: str) -> float:
    """'5%' -> 0.05, '0.05' -> 0.05; a bare number of 1 or more is refused (write '5%')."""
    text = text.strip()
    value = float(text[:-1]) / 100.0 if text.endswith("%") else float(text)
    if value < 0 or (not text.endswith("%") and value >= 1):
        raise ValueError(f"{text!r}: give a percentage like 5% or a fraction like 0.05")
    return value


# -- contention: other processes' CPU time during a timed block ------------------------------------------


@dataclass(frozen=True)
class CpuSample:
    wall: float  # s, monotonic
    system_busy: float | None  # s of CPU time used by everything on the machine (/proc/stat), None if unknown
    own: float  # s of CPU time used by this process, all threads (getrusage)


def _system_busy() -> float | None:
    """CPU seconds the whole machine has spent not idle: user+nice+system+irq+softirq+steal from /proc/stat."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    ticks = [int(v) for v in fields[1:9]] + [0] * 8
    user, nice, system, _idle, _iowait, irq, softirq, steal = ticks[:8]
    # guest time is already inside user/nice; steal is time the hypervisor gave our vCPUs to someone else
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def cpu_sample() -> CpuSample:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return CpuSample(time.perf_counter(), _system_busy(), usage.ru_utime + usage.ru_stime)


def foreign_load(start: CpuSample, end: CpuSample) -> float | None:
    """Cores' worth of CPU that other processes used between two samples (machine busy minus our own).

    /proc/stat counts in clock ticks (10 ms), so over a 0.3 s block on 2 cores the figure is good to
    about +-0.07 cores; None where /proc/stat is unavailable (not Linux).
    """
    if start.system_busy is None or end.system_busy is None:
        return None
    wall = end.wall - start.wall
    if wall <= 0:
        return None
    other = (end.system_busy - start.system_busy) - (end.own - start.own)
    return max(0.0, other / wall)


def slow_rounds(
    block_medians: Sequence[Sequence[float]],
    margin: float = SLOW_MARGIN,
    records: Sequence[float | None] | None = None,
) -> list[bool]:
    """Per round: did any model's block run more than `margin` slower than that model's fast blocks (its
    10th percentile of block medians, over the rounds given), or more than RECORD_MARGIN slower than its
    record on this machine where `records` gives one?

    On shared hosts (cloud VMs, CI runners) co-tenants slow the whole machine for seconds at a time, out of
    sight of this system's CPU accounting: measured on a 2-vCPU guest, a matrix product ran 1.55x slower on
    both CPUs for ~3 s at a time, and in those spells a small model's batch-1 speedup fell from 2.70x to
    2.07x. Such rounds measure the neighbours, so they are dropped and repeated like contended ones; a run
    slow throughout is compared with itself and keeps its rounds.
    """
    m = np.asarray(block_medians, dtype=float)  # models x rounds
    if m.size == 0:
        return []
    slow = m > (1.0 + margin) * np.percentile(m, 10, axis=1, keepdims=True)
    if records is not None:
        known = np.array([np.inf if r is None else r for r in records], dtype=float).reshape(-1, 1)
        slow |= m > (1.0 + RECORD_MARGIN) * known
    return [bool(x) for x in slow.any(axis=0)]


def keep_rounds(clean: Sequence[bool], wanted: int) -> tuple[list[int], bool]:
    """Indices of the rounds to use and whether the machine stayed busy throughout.

    Contended rounds are dropped. When fewer than a quarter of the wanted rounds (and fewer than 5)
    are clean, every round is kept and the run is marked contended: the figures then include other
    processes' interference, which paired per-round ratios only partly cancel.
    """
    good = [i for i, ok in enumerate(clean) if ok]
    enough = min(wanted, max(5, -(-wanted // 4)))
    if len(good) >= enough:
        return good, False
    return list(range(len(clean))), True


def rounds_to_keep(
    clean: Sequence[bool],
    medians: Sequence[Sequence[float]],
    records: Sequence[float | None],
    wanted: int,
) -> tuple[list[int], bool]:
    """The rounds to use (keep_rounds), the first choice that leaves enough: clean and not slow
    against the records; clean and not slow against the other rounds (the machine stayed slow through the
    wait); clean (blocks of a few runs, whose medians scatter by more than the slow margin); every round
    (contended)."""
    for flags in (slow_rounds(medians, records=records), slow_rounds(medians), [False] * len(clean)):
        kept, contended = keep_rounds([c and not w for c, w in zip(clean, flags, strict=True)], wanted)
        if not contended:
            break
    return kept, contended
