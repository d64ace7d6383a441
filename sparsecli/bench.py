"""onnxruntime timing of several models side by side: the harness behind `sparsecli benchmark` and `prune`.

Method (docs/benchmark.md has the full account):
- timing runs in a fresh process whose sessions share one onnxruntime thread pool (bench_worker), so no
  session's idle workers spin against another's calls and blocks need no pause between them;
- every session is created once (creation time and memory measured), then warmed up at each batch;
- timed in rounds: one block of back-to-back runs per model, order alternating (A B C, C B A, ...),
  so drift on a shared machine hits every model alike;
- runs during which our threads waited for a CPU are left out, and rounds during which other processes
  took CPU are dropped and repeated (bench_timing);
- a ratio is the median over rounds of the per-round ratio of block medians, with a bootstrap interval
  over rounds; a second session of the baseline (the control) shows the noise floor.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sparsecli import bench_inputs, bench_stats, bench_system, bench_timing, bench_worker
from sparsecli.bench_canary import Canary
from sparsecli.bench_inputs import InputSpec
from sparsecli.bench_session import (
    DEFAULT_MIN_TIME,
    EXECUTION_MODE,
    GRAPH_OPT,
    PROVIDERS,
    Settings,
    check_provider,
    open_session,
    runner,
)
from sparsecli.errors import BadInput

__all__ = ["EXECUTION_MODE", "GRAPH_OPT", "PROVIDERS", "InputSpec", "Settings", "check_provider", "run", "time_models"]

SCHEMA_VERSION = 1
WAITING = " (waiting: the machine runs slower than its record)"
Progress = Callable[[str, int, int], None]  # (what, done, total)


@dataclass
class Model:
    path: Path
    role: str  # baseline, model, control
    name: str = ""
    sess: Any = None
    create_ms: float = 0.0
    memory: dict[str, Any] = field(default_factory=dict)


def _names(models: list[Model]) -> None:
    """Display names: the file name; the path where two files share a name; '#i' where a path repeats."""
    timed = [m for m in models if m.role != "control"]
    for i, m in enumerate(timed):
        m.name = m.path.name if sum(o.path.name == m.path.name for o in timed) == 1 else str(m.path)
        if sum(o.path == m.path for o in timed) > 1:
            m.name += f" #{i}"
    for m in models:
        if m.role == "control":
            m.name = f"{timed[0].name} (control)"


def _plan(estimates: list[float], s: Settings) -> tuple[bench_timing.Plan, list[int]]:
    """The stopping plan and the runs per block for each model (~block_s of wall time, or iterations/rounds)."""
    if s.iterations is not None:
        rounds = max(1, min(s.iterations, s.rounds or s.min_rounds))
        return bench_timing.Plan(rounds, None, s.max_wait_s), [-(-s.iterations // rounds)] * len(estimates)
    per_block = [max(1, round(s.block_s / max(t, 1e-7))) for t in estimates]
    min_time = DEFAULT_MIN_TIME if s.min_time is None else s.min_time
    return bench_timing.Plan(s.min_rounds, min_time * len(estimates), s.max_wait_s), per_block


def _warm_up(run: Callable[[], Any], s: Settings) -> float:
    """Untimed runs; the mean seconds per run over the second half (sizes the first block; rounds re-aim it)."""
    took = []
    for _ in range(max(1, s.warmup)):
        start = time.perf_counter()
        run()
        took.append(time.perf_counter() - start)
    return float(np.mean(took[len(took) // 2 :]))


def _model_result(i: int, blocks: list, kept: list[int], contended: bool, feeds: dict, items: int) -> dict:
    latencies, medians = bench_timing.samples(blocks, kept, contended)
    return {
        "index": i,
        "input_shapes": {k: list(v.shape) for k, v in feeds.items()},
        "runs_per_block": int(np.median([b.wall_ms.size for b in blocks])),
        "runs": {
            "timed": sum(b.wall_ms.size for b in blocks),
            "waited": sum(int((~b.clean).sum()) for b in blocks),
            "used": int(latencies.size),
        },
        "latency_ms": bench_stats.summarize(latencies, items),
        "round_medians_ms": medians,
    }


def _contention(clock: bench_system.WaitClock, allowed: float, loads: list[float | None], clean: list[bool]) -> dict:
    measured = [x for x in loads if x is not None]
    return {
        "wait_clock": clock.available,
        "allowed_foreign_load": allowed,
        "foreign_load_median": float(np.median(measured)) if measured else None,
        "foreign_load_max": float(max(measured)) if measured else None,
        "foreign_load_per_round": loads,
        "clean_per_round": clean,
    }


def time_batch(
    models: list[Model], canary: Canary, batch: int | None, spec: InputSpec, s: Settings, progress: Progress | None
) -> dict:
    """Warm up and time every model at one batch, and the canary in the same rounds; statistics from the
    kept rounds, and how fast the machine ran in them (bench_canary).

    Kept: the clean rounds in which no model ran slow against its other rounds and the canary not against
    its record. If the machine never came back to its record speed within the wait budget, rounds are
    compared with each other only, and the machine is reported slow."""
    feeds = [bench_inputs.make_feeds(m.sess.get_inputs(), batch, spec) for m in models]
    items = bench_inputs.items(feeds[0])
    runners = [runner(m.sess, f, s) for m, f in zip(models, feeds, strict=True)]
    estimates = []
    for model, run in zip(models, runners, strict=True):
        with bench_system.memory_window(model.memory):
            estimates.append(_warm_up(run, s))
    plan, per_block = _plan([*estimates, _warm_up(canary.run, s)], s)
    clock = bench_system.WaitClock(bench_system.thread_ids())  # the caller and the shared pool's workers
    usable = bench_system.usable_cpus()
    allowed = max(0, usable - (s.threads or usable)) + s.max_foreign_load
    block_s = None if s.iterations is not None else s.block_s
    records = [None] * len(models) + [canary.best_ms]
    try:
        blocks, loads, clean = bench_timing.time_rounds(
            [*runners, canary.run], clock, per_block, plan, allowed, block_s, _progress(progress, s, items), records
        )
    finally:
        clock.close()
    medians = [[b.median_ms for b in model_blocks] for model_blocks in blocks]
    kept, contended = bench_stats.rounds_to_keep(clean, medians, records, plan.rounds)
    canary_blocks = blocks.pop()
    rounds = {"wanted": plan.rounds, "timed": plan.timed_rounds, "kept": len(kept)}
    slow = sum(clean) - len(kept) if not contended else 0  # clean by the clocks, yet the machine ran slow
    rounds.update(dropped=plan.timed_rounds - len(kept), slow=slow, contended=contended, timed_s=plan.timed_s)
    rounds["waited_s"] = plan.waited_s
    return {
        "provider": s.provider,
        "batch": items,
        "rounds": rounds,
        "contention": _contention(clock, allowed, loads, clean),
        "machine": canary.judge([canary_blocks[r].median_ms for r in kept]),
        "models": [_model_result(i, b, kept, contended, feeds[i], items) for i, b in enumerate(blocks)],
    }


def _progress(progress: Progress | None, s: Settings, items: int) -> Callable[[int, int, bool], None] | None:
    """The rounds' progress for the caller, labelled with provider and batch; '(waiting ...)' while the
    machine is slower than its record."""
    if progress is None:
        return None
    label = f"{s.provider} batch {items}"
    return lambda done, total, waiting: progress(label + (WAITING if waiting else ""), done, total)


def _ratios(result: dict, models: list[Model], s: Settings) -> tuple[list[dict], dict | None]:
    medians = [m["round_medians_ms"] for m in result["models"]]
    where = {"provider": s.provider, "batch": result["batch"]}
    control = None
    if models[-1].role == "control":
        c = bench_stats.paired_ratio(medians[0], medians[-1], seed=s.seed)
        floor = max(abs(1 - c["low"]), abs(c["high"] - 1))
        control = {**where, "ratio": c["estimate"], "interval": _interval(c), "noise_floor": floor}
    ratios = []
    for i, model in enumerate(models):
        if model.role == "model":
            r = bench_stats.paired_ratio(medians[0], medians[i], seed=s.seed)
            noisy = bench_stats.is_noisy(r, control and {"estimate": control["ratio"]})
            ratios.append(
                {
                    **where,
                    "baseline": models[0].name,
                    "model": model.name,
                    "index": i,
                    "speedup": r["estimate"],
                    "interval": _interval(r),
                    "noisy": noisy or result["rounds"]["contended"] or result["machine"]["slow"],
                    "contended": result["rounds"]["contended"],
                }
            )
    return ratios, control


def _interval(r: dict) -> dict:
    return {k: r[k] for k in ("low", "high", "confidence")}


def _open(paths: Sequence[Path], s: Settings) -> list[Model]:
    """Sessions for the models (and the control), with creation time and memory."""
    roles = ["baseline"] + ["model"] * (len(paths) - 1) + (["control"] if s.control else [])
    models = [Model(Path(p), role) for p, role in zip([*paths, paths[0]], roles, strict=False)]
    _names(models)
    for model in models:
        with bench_system.memory_window(model.memory):
            start = time.perf_counter()
            model.sess = open_session(model.path, s)
            model.create_ms = (time.perf_counter() - start) * 1000
    return models


def _describe(m: Model) -> dict:
    return {
        "role": m.role,
        "name": m.name,
        "path": str(m.path),
        "size_bytes": m.path.stat().st_size,
        "session_create_ms": m.create_ms,
        "memory": m.memory,
        "providers": m.sess.get_providers(),
        "inputs": [{"name": a.name, "type": a.type, "shape": list(a.shape)} for a in m.sess.get_inputs()],
    }


def run(
    paths: Sequence[Path],
    batches: Sequence[int | None],
    spec: InputSpec | None = None,
    s: Settings | None = None,
    progress: Progress | None = None,
) -> dict:
    """Benchmark `paths` (the first is the baseline) at each batch; the document of schemas/benchmark.schema.json.

    The timing runs in a fresh process (bench_worker); its errors about the inputs come back as BadInput.
    """
    spec = spec or InputSpec()
    s = s or Settings()
    check_provider(s.provider)
    missing = [str(p) for p in paths if not Path(p).is_file()]
    if missing:
        raise BadInput(f"no such model file: {', '.join(missing)}")
    return bench_worker.call(paths, batches, spec, s, progress)


def measure(
    paths: Sequence[Path], batches: Sequence[int | None], spec: InputSpec, s: Settings, progress: Progress | None
) -> dict:
    """`run`'s work, in a process whose sessions share one thread pool (bench_session.share_threads)."""
    environment = bench_system.environment(s.provider)
    canary = Canary.open(environment, s)  # first: it primes onnxruntime
    models = _open(paths, s)
    bench_inputs.check_names([m.sess.get_inputs() for m in models], spec)
    results, ratios, controls = [], [], []
    for batch in batches:
        result = time_batch(models, canary, batch, spec, s, progress)
        found, control = _ratios(result, models, s)
        results.append(result)
        ratios += found
        controls += [control] if control else []
    noisy = any(r["noisy"] for r in ratios) or any(c["noise_floor"] > bench_stats.NOISY_CONTROL for c in controls)
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "sparsecli.benchmark",
        "environment": {**environment, "process_threads": len(bench_system.thread_ids())},
        "settings": {**asdict(s), "io_binding": s.provider != "cpu" and not s.include_copies},
        "inputs": spec.describe(),
        "models": [{"index": i, **_describe(m)} for i, m in enumerate(models)],
        "results": results,
        "ratios": ratios,
        "controls": controls,
        "noisy": noisy,
        "contended": any(r["rounds"]["contended"] for r in results),
        "warnings": bench_system.warnings(results, controls),
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
    seq_len: int | None = None,
    max_wait_s: float = Settings.max_wait_s,
) -> list[dict[str, float]]:
    """Latency statistics (ms) per model at `batch`, from the same rounds and checks as `run` (no control).

    `seq_len` sets dynamic axes other than the batch (token models: the sequence length).
    """
    timing = {"warmup": warmup, "iterations": iterations, "rounds": rounds, "max_wait_s": max_wait_s}
    s = Settings(provider=provider, threads=threads, control=False, **timing)
    document = run(paths, [batch], InputSpec(seq_len=seq_len), s)
    return [m["latency_ms"] for m in document["results"][0]["models"]]
