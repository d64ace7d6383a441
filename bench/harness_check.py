"""Is `sparsecli benchmark` trustworthy? The Done-when check of issue 4, on a run folder.

    python bench/harness_check.py [RUN_DIR ...]      (default: runs/quickstart)

For each run folder (holding dense.onnx and model.onnx):
1. runs `sparsecli benchmark dense.onnx model.onnx --batch 1,32 --json` twice, back to back;
2. times the same two files with a plain onnxruntime loop (no sparsecli code: a default session per
   model, one alive at a time, random inputs, blocks alternating A B A B);
3. checks that the two harness runs' speedups agree within 5% and that they are within 10% of the plain
   loop's speedup, for every batch.

The plain loop's speedup is timeit's: each model's fastest block median ("the lowest value gives a lower
bound for how fast your machine can run the snippet; higher values are typically caused by other processes
interfering", Python's timeit documentation). Its median over all calls is recorded too, but on a shared
host it measures how long the neighbours were busy (the host slowed 1.5x for seconds at a time here), as
the harness's dropped slow rounds do.

Writes bench/results/harness_check.json and .md (one entry per run folder, updated in place).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
BATCHES = (1, 32)
REPEAT_TOLERANCE = 0.05
INDEPENDENT_TOLERANCE = 0.10
PLAIN_SECONDS = 12.0  # per batch, both models together
PLAIN_ROUNDS = 30  # A B blocks per batch: fine alternation, so sub-second machine drift hits both models


def harness(run_dir: Path) -> dict:
    """One `sparsecli benchmark ... --json` run, as a subprocess (exactly what a user types)."""
    cmd = [
        sys.executable,
        "-m",
        "sparsecli",
        "benchmark",
        str(run_dir / "dense.onnx"),
        str(run_dir / "model.onnx"),
        "--batch",
        ",".join(map(str, BATCHES)),
        "--json",
    ]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr}")
    document = json.loads(done.stdout)
    document["_wall_s"] = time.perf_counter() - start
    return document


def _time_alone(path: Path, batch: int, seconds: float) -> list[float]:
    """One default onnxruntime session, alone in the process (nothing else spinning), timed for `seconds`."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    declared = session.get_inputs()[0]
    shape = [batch] + [d for d in declared.shape[1:]]
    feed = {declared.name: np.random.default_rng(0).standard_normal(shape).astype(np.float32)}
    for _ in range(10):
        session.run(None, feed)
    times, end = [], time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        session.run(None, feed)
        times.append((time.perf_counter() - t0) * 1000)
    return times


def plain_loop(run_dir: Path, batch: int, seconds: float = PLAIN_SECONDS) -> dict:
    """Independent timing: default sessions, one model at a time (A B A B blocks); fastest block medians.

    Only one session exists at a time: two live default sessions in one process let the idle one's
    spinning workers slow the other's calls, which is a property of the loop, not of the models.
    """
    blocks: list[list[list[float]]] = [[], []]
    for _ in range(PLAIN_ROUNDS):
        for i, name in enumerate(("dense.onnx", "model.onnx")):
            blocks[i].append(_time_alone(run_dir / name, batch, seconds / (2 * PLAIN_ROUNDS)))
    best = [min(float(np.median(b)) for b in model) for model in blocks]
    p50 = [float(np.median(np.concatenate(model))) for model in blocks]
    return {
        "dense_best_block_ms": best[0],
        "model_best_block_ms": best[1],
        "speedup": best[0] / best[1],
        "dense_p50_ms": p50[0],
        "model_p50_ms": p50[1],
        "p50_speedup": p50[0] / p50[1],
        "calls_each": sum(len(b) for b in blocks[0]),
    }


def _row(b: int, runs: list[dict], plain: dict) -> dict:
    """One batch: both harness runs' speedups against each other and against the plain loop."""
    ratios = [next(r for r in doc["ratios"] if r["batch"] == b) for doc in runs]
    results = [next(r for r in doc["results"] if r["batch"] == b) for doc in runs]
    s1, s2 = ratios[0]["speedup"], ratios[1]["speedup"]
    repeat = abs(s1 / s2 - 1)
    independent = abs((s1 + s2) / 2 / plain["speedup"] - 1)
    return {
        "batch": b,
        "speedups": [s1, s2],
        "intervals": [[r["interval"]["low"], r["interval"]["high"]] for r in ratios],
        "noisy": [r["noisy"] for r in ratios],
        "contended": [r["contended"] for r in ratios],
        "noise_floor": [next(c for c in doc["controls"] if c["batch"] == b)["noise_floor"] for doc in runs],
        "rounds_kept_of_timed": [f"{r['rounds']['kept']}/{r['rounds']['timed']}" for r in results],
        "machine_slowdown": [r["machine"]["slowdown"] for r in results],  # canary vs this machine's best run
        "machine_slow": [r["machine"]["slow"] for r in results],
        "p50_ms": [[m["latency_ms"]["p50"] for m in r["models"]] for r in results],
        "repeat_difference": repeat,
        "repeat_ok": repeat <= REPEAT_TOLERANCE,
        "plain_loop": plain,
        "independent_difference": independent,
        "independent_ok": independent <= INDEPENDENT_TOLERANCE,
    }


def check(run_dir: Path) -> dict:
    load_before = os.getloadavg()
    runs = [harness(run_dir), harness(run_dir)]
    rows = [_row(b, runs, plain_loop(run_dir, b)) for b in BATCHES]
    env = runs[0]["environment"]
    return {
        "run_dir": str(run_dir),
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        "load_average_before": list(load_before),
        "load_average_after": list(os.getloadavg()),
        "cpu": env["cpu"],
        "usable_cpus": env["usable_cpus"],
        "onnxruntime": env["onnxruntime"],
        "harness_wall_s": [d["_wall_s"] for d in runs],
        "warnings": [d["warnings"] for d in runs],
        "batches": rows,
        "passed": all(r["repeat_ok"] and r["independent_ok"] for r in rows),
    }


def _pace(row: dict) -> str:
    """Each run's machine speed (canary) against this machine's best recorded run: '1.02x / 1.41x slow'."""
    paces = row.get("machine_slowdown", [])
    return " / ".join(
        "first" if x is None else f"{x:.2f}x" + (" slow" if slow else "")
        for x, slow in zip(paces, row.get("machine_slow", []), strict=True)
    )


def markdown(results: dict) -> str:
    lines = [
        "# Harness check: `sparsecli benchmark dense.onnx model.onnx --batch 1,32 --json`",
        "",
        f"Two back-to-back runs must agree within {REPEAT_TOLERANCE:.0%}; their mean must be within "
        f"{INDEPENDENT_TOLERANCE:.0%} of a plain onnxruntime loop (default sessions, blocks alternating; timeit's "
        "fastest block median per model; its all-calls median speedup in brackets). "
        "Machine vs best: the canary's time in each run against the fastest run recorded on this machine.",
        "",
        "| run | batch | speedup run 1 [95% CI] | speedup run 2 [95% CI] | repeat diff | plain loop | vs plain | "
        "noise floor | rounds kept | machine vs best | result |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for entry in results.values():
        for r in entry["batches"]:
            cis = [f"{s:.3f} [{lo:.3f}, {hi:.3f}]" for s, (lo, hi) in zip(r["speedups"], r["intervals"], strict=True)]
            flags = "".join(" (contended)" if c else "" for c in r["contended"][:1])
            ok = "pass" if r["repeat_ok"] and r["independent_ok"] else "FAIL"
            lines.append(
                f"| {entry['run_dir']} | {r['batch']} | {cis[0]} | {cis[1]} | {r['repeat_difference']:.1%} | "
                f"{r['plain_loop']['speedup']:.3f} ({r['plain_loop']['p50_speedup']:.3f}) | "
                f"{r['independent_difference']:.1%} | "
                f"{' / '.join(f'±{n:.1%}' for n in r['noise_floor'])} | {' / '.join(r['rounds_kept_of_timed'])} | "
                f"{_pace(r)} | {ok}{flags} |"
            )
    lines += [""]
    for entry in results.values():
        load = ", ".join(f"{x:.1f}" for x in entry["load_average_before"])
        lines.append(
            f"- {entry['run_dir']} ({entry['when']}): {entry['cpu']}, {entry['usable_cpus']} CPUs, onnxruntime "
            f"{entry['onnxruntime']}; load average before: {load}; harness runs took "
            f"{', '.join(f'{s:.0f}' for s in entry['harness_wall_s'])} s"
        )
        for w in sorted({w for ws in entry["warnings"] for w in ws}):
            lines.append(f"  - warning: {w}")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    run_dirs = [Path(a) for a in argv] or [ROOT / "runs" / "quickstart"]
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "harness_check.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    passed = True
    for run_dir in run_dirs:
        if not (run_dir / "dense.onnx").is_file() or not (run_dir / "model.onnx").is_file():
            raise SystemExit(f"{run_dir}: needs dense.onnx and model.onnx (run `sparsecli prune` first)")
        entry = check(run_dir)
        results[run_dir.resolve().name] = entry
        passed &= entry["passed"]
        for r in entry["batches"]:
            verdict = "pass" if r["repeat_ok"] and r["independent_ok"] else "FAIL"
            print(
                f"{run_dir} batch {r['batch']}: speedups {r['speedups'][0]:.3f} / {r['speedups'][1]:.3f} "
                f"(repeat diff {r['repeat_difference']:.1%}), plain loop {r['plain_loop']['speedup']:.3f} "
                f"[all-calls median {r['plain_loop']['p50_speedup']:.3f}] "
                f"(diff {r['independent_difference']:.1%}); machine vs best {_pace(r)} -> {verdict}"
            )
    path.write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / "harness_check.md").write_text(markdown(results))
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
