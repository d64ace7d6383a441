"""The timed rounds: waiting for a machine slower than its record, and the wait budget.

Runners here are fake workloads whose durations are set by sleeping, so a "slow machine" can be made on
purpose; the margins (2x and more against a 10% threshold) leave room for a busy test machine.
"""

from __future__ import annotations

import time

from sparsecli import bench_timing


class NoClock:
    """A wait clock that cannot read our threads: rounds are judged by the machine's CPU accounting only."""

    available = False

    def ns(self) -> int:
        return 0


class Workload:
    """A runner that takes `slow_s` per call for its first `slow_calls` calls, then `fast_s`."""

    def __init__(self, fast_s: float, slow_s: float = 0.0, slow_calls: int = 0):
        self.fast_s, self.slow_s, self.slow_calls, self.calls = fast_s, slow_s, slow_calls, 0

    def __call__(self) -> None:
        self.calls += 1
        time.sleep(self.slow_s if self.calls <= self.slow_calls else self.fast_s)


def _time(canary: Workload, record_ms: float | None, wait_s: float) -> tuple[list, bench_timing.Plan]:
    plan = bench_timing.Plan(rounds=4, seconds=None, wait_s=wait_s)
    model = Workload(fast_s=0.002)
    blocks, _, _ = bench_timing.time_rounds(
        [model, canary], NoClock(), [3, 3], plan, allowed_foreign=99.0, records=[None, record_ms]
    )
    return blocks, plan


def test_timing_waits_until_the_canary_is_back_at_its_record():
    canary = Workload(fast_s=0.002, slow_s=0.008, slow_calls=40)  # ~3x its record for its first 40 calls
    blocks, plan = _time(canary, record_ms=2.5, wait_s=10.0)
    assert plan.waited_s >= 40 * 0.008 * 0.9  # the slow calls were spent waiting, outside the rounds
    assert plan.waited_s < 5.0  # and the wait ended when the canary came back, not at the budget
    assert all(b.median_ms < 1.1 * 2.5 for b in blocks[1])  # every round ran at the record's speed


def test_wait_stops_at_its_budget_and_without_a_record_there_is_none():
    stuck = Workload(fast_s=0.008)  # never within 10% of a 2 ms record
    blocks, plan = _time(stuck, record_ms=2.0, wait_s=0.2)
    assert 0.2 <= plan.waited_s < 0.6
    assert len(blocks[1]) == plan.rounds  # the plan timed, none at the record: repeating would not help
    blocks, plan = _time(Workload(fast_s=0.008), record_ms=None, wait_s=10.0)
    assert plan.waited_s == 0.0 and len(blocks[1]) == plan.rounds
