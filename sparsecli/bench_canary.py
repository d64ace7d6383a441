"""The canary: a fixed small network timed in every round beside the models, and its best time on this machine.

Why: shared hosts run slow for minutes at a time. Measured on a 2-vCPU cloud guest, the whole machine ran
1.3-2x slower for 150 s straight, and in such spells a small model's batch-1 speedup read 2.0x instead of
2.6x. Rounds compared with each other (bench_stats.slow_rounds) cannot see a run that is slow throughout;
a workload whose best time on this machine is remembered can. Timing waits (within a budget) for the
canary to run at its record speed again, and a run that stays slow says so instead of passing a state of
the host off as a property of the models.

The best times live in a small JSON file per user (SPARSECLI_CACHE_DIR, else $XDG_CACHE_HOME/sparsecli,
else ~/.cache/sparsecli), keyed by CPU, onnxruntime version, provider and session settings. A file that
cannot be read or written only means no reference: the benchmark itself never fails on it.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sparsecli.atomic import atomic_path
from sparsecli.bench_session import Settings, open_session, runner
from sparsecli.bench_stats import RECORD_MARGIN
from sparsecli.errors import RunFailed

INPUT = "x"
SHAPE = (1, 16, 16, 16)
LAYERS, CHANNELS = 4, 32  # ~0.15 ms a call on one AMD EPYC vCPU: as short as the calls most hurt by a slow host
KEEP_ENTRIES = 50
MAX_AGE_S = 30 * 24 * 3600  # a month: hosts change under the same CPU name; old bests would flag every run
FILE_NAME = "machine-speed.json"


def model() -> bytes:
    """The canary network (convolutions and ReLUs, fixed weights): the same kernels and thread hand-offs as
    the CNNs this tool prunes, at a size whose calls take about a tenth of a millisecond."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, weights, x, width = [], [], INPUT, SHAPE[1]
    for i in range(LAYERS):
        w = (rng.standard_normal((CHANNELS, width, 3, 3)) * 0.1).astype(np.float32)
        weights.append(numpy_helper.from_array(w, f"w{i}"))
        nodes += [
            helper.make_node("Conv", [x, f"w{i}"], [f"conv{i}"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", [f"conv{i}"], [f"relu{i}"]),
        ]
        x, width = f"relu{i}", CHANNELS
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["y"]))
    graph = helper.make_graph(
        nodes,
        "sparsecli-canary",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, list(SHAPE))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, CHANNELS, 1, 1])],
        weights,
    )
    made = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    made.ir_version = min(made.ir_version, onnx.IR_VERSION, 8)
    return made.SerializeToString()


def feeds() -> dict[str, np.ndarray]:
    return {INPUT: np.random.default_rng(0).standard_normal(SHAPE).astype(np.float32)}


def cache_file() -> Path:
    root = os.environ.get("SPARSECLI_CACHE_DIR")
    if root:
        return Path(root) / FILE_NAME
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "sparsecli" / FILE_NAME


def key(environment: dict[str, Any], s: Settings) -> str:
    """What the canary's time depends on besides the host's state: CPU, runtime, provider, session settings."""
    parts = [
        environment["cpu"],
        environment.get("cpu_id") or "",  # one marketing name covers several generations (AMD EPYC)
        f"{environment['usable_cpus']} cpus",
        f"onnxruntime {environment['onnxruntime']}",
        s.provider,
        f"threads {s.threads or 'default'}/{s.inter_threads or 'default'}",
        s.graph_opt,
        s.execution_mode,
        "with copies" if s.include_copies else "",
    ]
    return " | ".join(p for p in parts if p)


def _read(path: Path) -> dict[str, list[list[float]]]:
    """The cache's entries, {key: [[unix time, ms], ...]}; anything else in the file is ignored."""
    with contextlib.suppress(OSError, ValueError):
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict):
            return {
                name: [e for e in entries if isinstance(e, list) and len(e) == 2 and all(_number(v) for v in e)]
                for name, entries in data.items()
                if isinstance(entries, list)
            }
    return {}


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value and value >= 0


def best(name: str, now: float | None = None) -> float | None:
    """The fastest canary time (ms) recorded for `name` within the last month, or None."""
    return _fastest(_read(cache_file()).get(name, []), time.time() if now is None else now)


def _fastest(entries: list[list[float]], now: float) -> float | None:
    times = [ms for when, ms in entries if now - when <= MAX_AGE_S]
    return min(times) if times else None


def remember(name: str, ms: float, now: float | None = None) -> None:
    """Record a run's canary time (the newest KEEP_ENTRIES are kept, written atomically)."""
    now = time.time() if now is None else now
    path = cache_file()
    data = _read(path)
    data[name] = [*data.get(name, []), [now, ms]][-KEEP_ENTRIES:]
    with contextlib.suppress(RunFailed), atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")


@dataclass
class Canary:
    run: Callable[[], Any]  # one call of the canary network
    key: str  # its entry in the cache of best times
    best_ms: float | None = None  # the fastest earlier run on this machine: the record timing waits for

    @classmethod
    def open(cls, environment: dict[str, Any], s: Settings) -> Canary:
        """The canary's session on the shared pool. Opened before the models, it also absorbs onnxruntime's
        one-time set-up (environment, thread pool), which would otherwise be billed to the first model."""
        sess = open_session(model(), s, name="the canary network")
        name = key(environment, s)
        return cls(runner(sess, feeds(), s), name, best(name))

    def judge(self, kept_ms: list[float]) -> dict[str, Any]:
        """How fast the machine ran in the kept rounds (the canary's median block time) against the fastest
        earlier run recorded; then this run is recorded, and is the record for the next batch if faster."""
        ran = float(np.median(kept_ms))
        reference = self.best_ms
        remember(self.key, ran)
        self.best_ms = ran if reference is None else min(reference, ran)
        slowdown = None if reference is None else ran / reference
        return {
            "canary_ms": ran,
            "best_ms": reference,
            "slowdown": slowdown,
            "slow": slowdown is not None and slowdown > 1.0 + RECORD_MARGIN,
            "key": self.key,
        }
