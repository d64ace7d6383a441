"""INT8 on top of pruning: every quantization setting of a finished run's model.fp32.onnx, timed side by side.

Run the recipes first (they write the run folders), then this script:

    .venv/bin/sparsecli prune configs/quantized.yaml --overwrite
    .venv/bin/sparsecli prune configs/structured-resnet.yaml --overwrite --set export.quantize=static
    .venv/bin/python bench/quantize.py runs/quantized runs/structured-resnet

For each run it writes every INT8 setting `auto` would try (into a temporary folder), checks each
one's parity as the pipeline does, and times the run's chain files plus those variants in one
interleaved run per (threads, batch). Writes bench/results/quantize.json and .md.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from sparsecli import baseline, bench, measure, quantize
from sparsecli.recipe import load

RESULTS = Path(__file__).parent / "results"


def measure_run(run_dir: Path, threads: list[int], batches: list[int], iterations: int) -> dict:
    """Sizes, accuracy and p50 per file of one run, with every INT8 variant of its fp32 compressed model."""
    recipe = load(run_dir / "recipe.yaml")
    data = baseline.load_data(recipe)
    fp32 = run_dir / "model.fp32.onnx"
    evidence = quantize.Evidence.of(recipe, data, data.loader("val", baseline.eval_batch(recipe, data)))
    settings, _ = quantize.fitting_settings(fp32)
    with tempfile.TemporaryDirectory() as tmp:
        files = {path.name: path for _, path in quantize.stage_files(run_dir, quantized=True)}
        for s in settings:
            path = Path(tmp) / f"{s.label}.onnx"
            files[f"variant {s.label}"] = quantize.quantize_file(fp32, path, s, evidence.samples)
        checks = {
            s.label: quantize.check_int8(files[f"variant {s.label}"], fp32, s, evidence, recipe.export)
            for s in settings
        }
        rows = {name: {"size": measure.file_sizes(path)} for name, path in files.items()}
        for t in threads:
            for b in batches:
                stats = bench.time_models(list(files.values()), b, threads=t, warmup=20, iterations=iterations)
                for name, s in zip(files, stats, strict=True):
                    rows[name][f"p50_ms t{t} b{b}"] = s["p50"]
    return {"run": str(run_dir), "files": rows, "parity": checks}


def markdown(results: list[dict]) -> str:
    lines = ["# INT8 on pruned models (p50 ms, interleaved; speedup vs model.fp32.onnx in brackets)", ""]
    for r in results:
        files = r["files"]
        timing_keys = [k for k in files["model.fp32.onnx"] if k.startswith("p50")]
        lines += [f"## {r['run']}", "", "| file | bytes | gzip | " + " | ".join(timing_keys) + " |"]
        lines += ["|---|---:|---:|" + "---:|" * len(timing_keys)]
        for name, row in files.items():
            times = [f"{row[k]:.3f} ({files['model.fp32.onnx'][k] / row[k]:.2f}x)" for k in timing_keys]
            lines.append(f"| {name} | {row['size']['raw']:,} | {row['size']['gzip']:,} | {' | '.join(times)} |")
        lines += ["", "| variant | accuracy | parity |", "|---|---:|---|"]
        lines += [
            f"| {label} | {c['accuracy']:.4f} | {'pass' if c['passed'] else '; '.join(c['problems'])} |"
            for label, c in r["parity"].items()
        ]
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="run folders made with export.quantize set")
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 32])
    parser.add_argument("--iterations", type=int, default=200)
    args = parser.parse_args()
    results = [measure_run(run, args.threads, args.batches, args.iterations) for run in args.runs]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "quantize.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / "quantize.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
