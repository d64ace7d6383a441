"""Dense vs channels ratio 0.3 / 0.5 / 0.7 on configs/structured-resnet.yaml, timed side by side.

    .venv/bin/python bench/structured.py                 # the recipe's threads (1)
    .venv/bin/python bench/structured.py --threads 1 4 --iterations 400

Each ratio is one pipeline run of the recipe (`--set passes.0.ratio=R`; the dense model is trained
once and cached), so accuracy, MACs and params are exactly what `sparsecli prune` reports. Latency
is then taken in one interleaved onnxruntime run over dense.onnx and the three model.onnx files per
(threads, batch), so every speedup compares figures from the same minutes of the same machine.
Writes bench/results/structured.json and .md; the run folders go to runs/bench-structured/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

import onnxruntime

from sparsecli import bench, pipeline
from sparsecli.atomic import write_json, write_text
from sparsecli.console import UI
from sparsecli.recipe import load

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "configs" / "structured-resnet.yaml"
RESULTS = Path(__file__).parent / "results"
RATIOS = (0.3, 0.5, 0.7)


def prune(ratio: float, runs: Path, ui: UI) -> tuple[dict, Path]:
    """One pipeline run at `ratio` (its own timing kept minimal: the joint run below replaces it)."""
    output = runs / f"ratio-{ratio}"
    settings = [f"passes.0.ratio={ratio}", f"output={output}", "benchmark.warmup=0", "benchmark.iterations=1"]
    return pipeline.run(load(RECIPE, settings), ui, overwrite=True), output


def model_rows(runs: Path) -> dict[str, dict]:
    """Accuracy, MACs and params per model, as the pipeline reports them, and the ONNX file to time."""
    ui = UI(json_mode=True)
    rows = {}
    for ratio in RATIOS:
        report, run_dir = prune(ratio, runs, ui)
        if not rows:
            rows["dense"] = {k: report[k]["dense"] for k in ("accuracy", "macs", "params")}
            rows["dense"]["file"] = run_dir / "dense.onnx"
        rows[f"ratio {ratio}"] = {k: report[k]["compressed"] for k in ("accuracy", "macs", "params")}
        rows[f"ratio {ratio}"]["file"] = run_dir / "model.onnx"
    return rows


def measure(runs: Path, threads: list[int | None], iterations: int) -> dict:
    rows = model_rows(runs)
    for t in threads:
        for batch in load(RECIPE).benchmark.batch_sizes:
            files = [r["file"] for r in rows.values()]
            stats = bench.time_models(files, batch, threads=t, warmup=20, iterations=iterations)
            for row, s in zip(rows.values(), stats, strict=True):
                row.setdefault("p50_ms", {})[f"t{t or 'default'} b{batch}"] = s["p50"]
    dense = rows["dense"]
    for row in rows.values():
        row["file"] = str(row["file"].relative_to(ROOT) if row["file"].is_relative_to(ROOT) else row["file"])
        row["mac_reduction"] = dense["macs"] / row["macs"]
        row["speedup"] = {k: dense["p50_ms"][k] / v for k, v in row["p50_ms"].items()}
        row["speedup_efficiency"] = {k: s / row["mac_reduction"] for k, s in row["speedup"].items()}
    environment = {"python": platform.python_version(), "onnxruntime": onnxruntime.__version__}
    environment.update(machine=platform.machine(), cpus=os.cpu_count())
    return {"recipe": str(RECIPE.relative_to(ROOT)), "iterations": iterations, "environment": environment, "rows": rows}


def markdown(result: dict) -> str:
    keys = list(result["rows"]["dense"]["p50_ms"])
    lines = [
        f"# Structured channel pruning: {result['recipe']} (onnxruntime CPU, p50 ms interleaved)",
        "",
        "| model | accuracy | MACs | params | "
        + " | ".join(f"p50 ms {k}" for k in keys)
        + " | "
        + " | ".join(f"speedup {k} (efficiency)" for k in keys)
        + " |",
        "|---|---:|---:|---:|" + "---:|" * 2 * len(keys),
    ]
    for name, r in result["rows"].items():
        times = [f"{r['p50_ms'][k]:.3f}" for k in keys]
        speed = [f"{r['speedup'][k]:.2f}x ({r['speedup_efficiency'][k]:.2f})" for k in keys]
        lines.append(
            f"| {name} | {100 * r['accuracy']:.2f} % | {r['macs']:,} ({1 / r['mac_reduction']:.2f}x) "
            f"| {r['params']:,} | " + " | ".join(times) + " | " + " | ".join(speed) + " |"
        )
    lines += [
        "",
        "Efficiency = measured speedup / MAC reduction (1.0: latency falls exactly as MACs do). "
        "`tN bM`: N onnxruntime threads, batch M.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, nargs="+", help="onnxruntime threads to time with (default: recipe's)")
    parser.add_argument("--iterations", type=int, default=300, help="timed runs per model, batch and thread count")
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "bench-structured", help="run folders")
    args = parser.parse_args()
    threads = args.threads or [load(RECIPE).benchmark.threads]
    result = measure(args.runs, threads, args.iterations)
    write_json(RESULTS / "structured.json", result)
    write_text(RESULTS / "structured.md", markdown(result))
    print(json.dumps(result["rows"], indent=2))


if __name__ == "__main__":
    main()
