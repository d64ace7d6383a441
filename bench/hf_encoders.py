"""Hugging Face encoders pruned by heads + FFN neurons with distillation: quality, size and speed, side by side.

    .venv/bin/python bench/hf_encoders.py                    # configs/bert-tiny.yaml and configs/minilm.yaml
    .venv/bin/python bench/hf_encoders.py --only bert-tiny --iterations 300

Each recipe runs once through the real pipeline (`sparsecli prune`); then dense.onnx and model.onnx are
timed again in one interleaved onnxruntime run at batch 1, sequence 128, for each thread count. Writes
bench/results/hf_encoders.json and .md; run folders go to runs/bench-<recipe>/.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import onnxruntime
import torch

from sparsecli import bench, pipeline
from sparsecli.atomic import write_json, write_text
from sparsecli.console import UI
from sparsecli.recipe import load

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
RECIPES = ("bert-tiny", "minilm")


def measure(name: str, threads: list[int | None], iterations: int) -> dict:
    recipe = load(ROOT / "configs" / f"{name}.yaml", [f"output={ROOT / 'runs' / f'bench-{name}'}"])
    start = time.perf_counter()
    report = pipeline.run(recipe, UI(json_mode=True), overwrite=True)
    row = {
        "recipe": f"configs/{name}.yaml",
        "metric": report["accuracy"]["metric"],
        "dense": report["accuracy"]["dense"],
        "compressed": report["accuracy"]["compressed"],
        "params": report["params"],
        "mac_reduction": report["macs"]["reduction"],
        "wall_s": time.perf_counter() - start,
        "pipeline_speedup": report["speedup"],
        "p50_ms": {},
    }
    files = [recipe.run_dir / "dense.onnx", recipe.run_dir / "model.onnx"]
    seq_len = recipe.benchmark.seq_len
    for t in threads:
        dense, pruned = bench.time_models(files, 1, threads=t, iterations=iterations, seq_len=seq_len)
        label = f"threads {t or 'default'}, batch 1, seq {seq_len}"
        row["p50_ms"][label] = {"dense": dense["p50"], "pruned": pruned["p50"], "speedup": dense["p50"] / pruned["p50"]}
    return row


def markdown(rows: dict[str, dict], environment: dict) -> str:
    lines = [
        "# Transformers: heads + FFN neurons pruned, recovered by distillation",
        "",
        f"onnxruntime {environment['onnxruntime']}, torch {environment['torch']}, {environment['machine']}; "
        "ratios come from one interleaved run per row; absolute times depend on the machine's load.",
        "",
        "| recipe | metric dense -> pruned | params dense -> pruned | MACs | timing | p50 ms dense | p50 ms pruned | "
        "speedup | wall s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        for label, t in r["p50_ms"].items():
            lines.append(
                f"| {name} | {r['metric']} {r['dense']:.4f} -> {r['compressed']:.4f} | "
                f"{r['params']['dense']:,} -> {r['params']['compressed']:,} | {r['mac_reduction']:.2f}x | {label} | "
                f"{t['dense']:.3f} | {t['pruned']:.3f} | {t['speedup']:.2f}x | {r['wall_s']:.0f} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=RECIPES, default=list(RECIPES))
    parser.add_argument("--threads", nargs="*", type=int, default=[1, 2])
    parser.add_argument("--iterations", type=int, default=200)
    args = parser.parse_args()
    path = RESULTS / "hf_encoders.json"
    rows = json.loads(path.read_text())["rows"] if path.is_file() else {}  # rows of recipes not rerun stay
    rows.update({name: measure(name, args.threads, args.iterations) for name in args.only})
    environment = {"onnxruntime": onnxruntime.__version__, "torch": torch.__version__, "machine": platform.machine()}
    RESULTS.mkdir(exist_ok=True)
    write_json(RESULTS / "hf_encoders.json", {"environment": environment, "rows": rows})
    write_text(RESULTS / "hf_encoders.md", markdown(rows, environment))
    print(markdown(rows, environment))


if __name__ == "__main__":
    main()
