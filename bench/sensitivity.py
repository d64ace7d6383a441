"""Sensitivity-derived per-layer targets vs uniform per-layer pruning, at the same overall sparsity.

    .venv/bin/python bench/sensitivity.py                      # targets 0.8 and 0.9
    .venv/bin/python bench/sensitivity.py --targets 0.9 --seeds 0 1

For each target: `sparsecli sensitivity` on configs/quickstart.yaml (zoo convnet, digits) writes a
recipe with per-layer targets; the same recipe with every layer at the target (`scope: per_layer`,
no per-layer entries) is the uniform baseline. Both are ordinary pipeline runs with the same seed,
schedule and fine-tuning, so only the allocation differs; the accuracy is model.onnx on the
validation split, measured with onnxruntime. Writes bench/results/sensitivity.json and .md; run
folders go to runs/bench-sensitivity/.
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

import torch

from sparsecli import pipeline, sensitivity
from sparsecli.atomic import write_json, write_text
from sparsecli.console import UI
from sparsecli.recipe import load

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "configs" / "quickstart.yaml"
RESULTS = Path(__file__).parent / "results"
QUICK = ["benchmark.warmup=0", "benchmark.iterations=1", "gates={}"]  # latency is not compared here


def pruned_layers(result: dict, layers: list[str]) -> float:
    """Measured zero fraction over the layers the pass prunes (the classifier is excluded from both)."""
    per_layer = result["layers"]
    zeros = sum(per_layer[f]["sparsity"] * per_layer[f]["params"] for f in layers)
    return zeros / sum(per_layer[f]["params"] for f in layers)


def compare(target: float, seed: int, runs: Path, ui: UI) -> dict:
    base = [f"seed={seed}", f"passes.0.target={target}", "passes.0.scope=per_layer"]
    prefix = runs / f"t{target}-s{seed}"  # run folders side by side: one dense model cache (runs/.cache) for all
    written = Path(f"{prefix}-sensitive.yaml")
    doc = sensitivity.analyze(RECIPE, [*base, f"output={prefix}-analysis"], ui, target, written)
    layers = list(doc["layers"])
    uniform = pipeline.run(load(RECIPE, [*base, *QUICK, f"output={prefix}-uniform"]), ui, overwrite=True)
    sensitive = pipeline.run(load(written, [*QUICK, f"output={prefix}-sensitive"]), ui, overwrite=True)
    return {
        "target": target,
        "seed": seed,
        "dense_accuracy": uniform["accuracy"]["dense"],
        "per_layer_targets": {f: doc["layers"][f]["target"] for f in layers},
        "uniform": {"accuracy": uniform["accuracy"]["compressed"], "sparsity": pruned_layers(uniform, layers)},
        "sensitive": {"accuracy": sensitive["accuracy"]["compressed"], "sparsity": pruned_layers(sensitive, layers)},
        "overall_sparsity": {"uniform": uniform["sparsity"]["overall"], "sensitive": sensitive["sparsity"]["overall"]},
    }


def markdown(rows: list[dict], environment: dict) -> str:
    lines = [
        "# Sensitivity-derived vs uniform per-layer targets (zoo convnet, digits)",
        "",
        f"Same seed, schedule and fine-tuning per row; accuracy of model.onnx on validation. {environment}",
        "",
        "| target | seed | dense acc | uniform acc | sensitive acc | diff (pt) | pruned-layer sparsity u / s | "
        "per-layer targets (sensitive) |",
        "|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in rows:
        u, s = r["uniform"], r["sensitive"]
        targets = ", ".join(f"{k} {v:.3f}" for k, v in r["per_layer_targets"].items())
        lines.append(
            f"| {r['target']} | {r['seed']} | {r['dense_accuracy']:.4f} | {u['accuracy']:.4f} | {s['accuracy']:.4f} | "
            f"{100 * (s['accuracy'] - u['accuracy']):+.2f} | {u['sparsity']:.4f} / {s['sparsity']:.4f} | {targets} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=float, nargs="+", default=[0.8, 0.9])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "bench-sensitivity")
    args = parser.parse_args()
    ui = UI(json_mode=True)
    rows = [compare(t, seed, args.runs, ui) for t in args.targets for seed in args.seeds]
    environment = {"torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine()}
    write_json(RESULTS / "sensitivity.json", {"rows": rows, "environment": environment})
    write_text(RESULTS / "sensitivity.md", markdown(rows, environment))
    print(markdown(rows, environment))


if __name__ == "__main__":
    main()
