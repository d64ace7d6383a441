"""Dense vs heads + neurons pruned zoo transformer (configs/structured-transformer.yaml), timed side by side.

    .venv/bin/python bench/structured_transformer.py
    .venv/bin/python bench/structured_transformer.py --threads 1 2 --iterations 500 --set finetune.epochs=20

One pipeline run of the recipe gives dense.onnx, model.onnx and the accuracy, MACs and params that
`sparsecli prune` reports. A third file, converted.onnx, is the dense model with every
nn.MultiheadAttention replaced by the equivalent SlimAttention and no head removed: it separates what
the plain exported attention graph changes from what removing heads and neurons buys. The three are
timed in one interleaved onnxruntime run per (threads, batch). Writes
bench/results/structured-transformer.json and .md; the run folder goes to runs/bench-structured-transformer/.
"""

from __future__ import annotations

import argparse
import os
import platform
from pathlib import Path

import onnxruntime
import torch

from sparsecli import baseline, bench, measure, pipeline
from sparsecli.atomic import write_json, write_text
from sparsecli.console import UI
from sparsecli.export import export_onnx
from sparsecli.passes import PassContext
from sparsecli.passes.heads import HeadsPass, HeadsSpec
from sparsecli.recipe import load

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "configs" / "structured-transformer.yaml"
RESULTS = Path(__file__).parent / "results"


def converted(recipe, run_dir: Path) -> tuple[Path, int]:
    """The dense model with SlimAttention in place of nn.MultiheadAttention, exported; and its MACs."""
    data = baseline.load_data(recipe)
    model = baseline.fresh_model(recipe, data)
    model.load_state_dict(torch.load(run_dir / "dense.pt", weights_only=True))
    example = baseline.example_input(recipe, data)
    HeadsPass(HeadsSpec(ratio=0.0)).prepare(model, PassContext(example))
    path = export_onnx(model, example, run_dir / "converted.onnx", recipe.export.opset, recipe.export.dynamic_batch)
    return path, measure.count_macs(model, example[:1])


def measure_all(settings: list[str], threads: list[int | None], iterations: int) -> dict:
    recipe = load(RECIPE, [f"output={ROOT / 'runs' / 'bench-structured-transformer'}", *settings])
    report = pipeline.run(recipe, UI(json_mode=True), overwrite=True)
    run_dir = recipe.run_dir
    conv_path, conv_macs = converted(recipe, run_dir)
    accuracy, macs = report["accuracy"], report["macs"]
    rows = {
        "dense": {"file": run_dir / "dense.onnx", "accuracy": accuracy["dense"], "macs": macs["dense"]},
        "converted, no head removed": {"file": conv_path, "accuracy": accuracy["dense"], "macs": conv_macs},
        "pruned": {"file": run_dir / "model.onnx", "accuracy": accuracy["compressed"], "macs": macs["compressed"]},
    }
    for row in rows.values():
        row["params"] = measure.onnx_params(row["file"])
    for t in threads:
        for batch in recipe.benchmark.batch_sizes:
            files = [r["file"] for r in rows.values()]
            stats = bench.time_models(files, batch, threads=t, iterations=iterations)
            for row, s in zip(rows.values(), stats, strict=True):
                row.setdefault("p50_ms", {})[f"t{t or 'default'} b{batch}"] = s["p50"]
    for row in rows.values():
        row["file"] = str(row["file"].relative_to(ROOT))
        row["mac_reduction"] = rows["dense"]["macs"] / row["macs"]
        row["speedup"] = {k: rows["dense"]["p50_ms"][k] / v for k, v in row["p50_ms"].items()}
        row["speedup_efficiency"] = {k: s / row["mac_reduction"] for k, s in row["speedup"].items()}
    environment = {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count()}
    environment["onnxruntime"] = onnxruntime.__version__
    return {"recipe": str(RECIPE.relative_to(ROOT)), "settings": settings, "environment": environment, "rows": rows}


def markdown(result: dict) -> str:
    keys = list(result["rows"]["dense"]["p50_ms"])
    lines = [
        f"# Heads + neurons pruning: {result['recipe']} {' '.join(result['settings'])} (onnxruntime CPU, p50 ms)",
        "",
        "| model | accuracy | MACs | params | " + " | ".join(f"p50 ms {k} (speedup, efficiency)" for k in keys) + " |",
        "|---|---:|---:|---:|" + "---:|" * len(keys),
    ]
    for name, r in result["rows"].items():
        cells = [f"{100 * r['accuracy']:.2f} %", f"{r['macs']:,}", f"{r['params']:,}"]
        cells += [f"{r['p50_ms'][k]:.3f} ({r['speedup'][k]:.2f}x, {r['speedup_efficiency'][k]:.2f})" for k in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "Speedup vs dense; efficiency = speedup / MAC reduction. `tN bM`: N threads, batch M.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, nargs="+", help="onnxruntime threads (default: its own)")
    parser.add_argument("--iterations", type=int, default=300, help="timed runs per model, batch and thread count")
    parser.add_argument("--set", dest="settings", action="append", default=[], help="recipe override, like the CLI")
    args = parser.parse_args()
    result = measure_all(args.settings, args.threads or [None], args.iterations)
    write_json(RESULTS / "structured-transformer.json", result)
    write_text(RESULTS / "structured-transformer.md", markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
