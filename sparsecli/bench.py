"""onnxruntime timing of several models side by side.

Models are timed in interleaved rounds (A B, B A, A B ...) after a warm-up, so drift on a shared
machine hits every model alike; ratios are only ever taken between figures from the same run.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sparsecli.export import session

ONNX_TO_NUMPY = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(bool)": np.bool_,
}


def make_inputs(sess, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Random inputs matching the session's declared inputs, with the batch axis set to `batch`."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for arg in sess.get_inputs():
        shape = [batch if i == 0 else (d if isinstance(d, int) else 1) for i, d in enumerate(arg.shape)]
        dtype = ONNX_TO_NUMPY.get(arg.type, np.float32)
        if np.issubdtype(dtype, np.integer):
            feeds[arg.name] = rng.integers(0, 2, size=shape, dtype=dtype)
        else:
            feeds[arg.name] = rng.standard_normal(shape).astype(dtype)
    return feeds


def percentiles(samples_ms: Sequence[float], batch: int) -> dict[str, float]:
    a = np.asarray(samples_ms)
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return {
        "p50": float(p50),
        "p90": float(p90),
        "p99": float(p99),
        "mean": float(a.mean()),
        "std": float(a.std()),
        "throughput": float(batch * 1000.0 / a.mean()),
        "n": int(a.size),
    }


def time_models(
    paths: Sequence[Path],
    batch: int,
    *,
    provider: str = "cpu",
    threads: int | None = None,
    warmup: int = 10,
    iterations: int = 50,
    rounds: int = 10,
) -> list[dict[str, float]]:
    """Latency statistics (ms) for each model at `batch`, measured in interleaved rounds."""
    sessions = [session(p, provider, threads) for p in paths]
    feeds = [make_inputs(s, batch) for s in sessions]
    for sess, feed in zip(sessions, feeds, strict=True):
        for _ in range(warmup):
            sess.run(None, feed)
    samples: list[list[float]] = [[] for _ in sessions]
    per_round = max(1, iterations // rounds)
    for r in range(max(1, iterations // per_round)):
        order = range(len(sessions)) if r % 2 == 0 else reversed(range(len(sessions)))
        for i in order:
            for _ in range(per_round):
                start = time.perf_counter_ns()
                sessions[i].run(None, feeds[i])
                samples[i].append((time.perf_counter_ns() - start) / 1e6)
    return [percentiles(s, batch) for s in samples]
