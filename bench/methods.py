"""The sparsity methods side by side: one model (zoo convnet), one data set (digits), 90% where it applies.

Each row is a real `sparsecli prune` run of a recipe in configs/ (with the overrides shown), so the
figures are the report's: ONNX accuracy on the validation split, weight sparsity of model.onnx, and
its size raw and gzip-compressed. The dense baseline is trained once and shared by every row.
Activation sparsity is the mean exact-zero share of the ReLU outputs on the validation split,
measured with onnxruntime. Writes bench/results/methods.json and methods.md.

    .venv/bin/python bench/methods.py            # all rows
    .venv/bin/python bench/methods.py --only regrow-scratch gradual-magnitude
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from sparsecli import baseline, measure, pipeline, sweep
from sparsecli import recipe as recipes
from sparsecli.console import UI

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
COMMON = ["benchmark.warmup=2", "benchmark.iterations=10", "benchmark.batch_sizes=[1]", "gates={}"]

# slug -> (label, recipe in configs/, overrides)
METHODS: dict[str, tuple[str, str, list[str]]] = {
    "one-shot-magnitude": ("magnitude, one-shot", "quickstart.yaml", ["passes.0.target=0.9", "passes.0.schedule={}"]),
    "gradual-magnitude": ("magnitude, gradual (cubic)", "quickstart.yaml", ["passes.0.target=0.9"]),
    "l1": ("L1 penalty (λ1 = 5e-5), cut to 90%", "l1.yaml", ["passes.0.threshold=null", "passes.0.target=0.9"]),
    "l1-strong": (
        "L1 penalty (λ1 = 1e-3), cut to 90%",
        "l1.yaml",
        ["passes.0.l1=0.001", "passes.0.threshold=null", "passes.0.target=0.9"],
    ),
    "l2": ("L2 penalty, cut to 90%", "l2.yaml", ["passes.0.threshold=null", "passes.0.target=0.9"]),
    "l1_l2": ("L1+L2 penalty, cut to 90%", "l1_l2.yaml", ["passes.0.threshold=null", "passes.0.target=0.9"]),
    "regrow-scratch": ("regrow (RigL), from scratch", "regrow.yaml", []),
    "regrow-scratch-random": ("regrow (SET), from scratch", "regrow.yaml", ["passes.0.grow=random"]),
    "regrow-trained": (
        "regrow (RigL), from the trained model",
        "regrow.yaml",
        ["finetune.from_scratch=false", "finetune.epochs=6", "finetune.optimizer.lr=0.001"],
    ),
    "group-lasso": ("group lasso (channels, own sparsity)", "group-lasso.yaml", []),
    "nm": ("2:4 N:M (50% by pattern)", "nm.yaml", []),
    "activation": ("activation L1 (dense weights)", "activation.yaml", []),
}


def relu_sparsity(run_dir: Path, recipe: recipes.Recipe) -> float:
    x = baseline.load_data(recipe).val.tensors[0].numpy()
    found = measure.onnx_activation_sparsity(run_dir / "model.onnx", x, eps=1e-3)
    return float(np.mean([a["sparsity"] for a in found.values() if a["op"] == "Relu"]))


def run(slug: str, folder: Path) -> dict:
    label, config, overrides = METHODS[slug]
    recipe = recipes.load(ROOT / "configs" / config, [*COMMON, *overrides, f"output={folder / slug}"])
    report = pipeline.run(recipe, UI(quiet=True), overwrite=True)
    return {
        "method": label,
        "recipe": f"configs/{config}",
        "overrides": overrides,
        "epochs": recipe.finetune.epochs,
        "from_scratch": recipe.finetune.from_scratch,
        **sweep.figures(report),
        "size_gzip_bytes_dense": report["size_gzip_bytes"]["dense"],
        "relu_sparsity": relu_sparsity(recipe.run_dir, recipe),
    }


def markdown(rows: list[dict]) -> str:
    lines = [
        "| method | fine-tune epochs | accuracy (dense) | weight sparsity | bytes | gzip bytes | ReLU zeros |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['epochs']} | {r['accuracy']:.4f} ({r['accuracy_dense']:.4f}) | {r['sparsity']:.3f} "
            f"| {r['size_bytes']:,} | {r['size_gzip_bytes']:,} | {r['relu_sparsity']:.3f} |"
        )
    dense = rows[0]["size_gzip_bytes_dense"] if rows else 0
    return "\n".join(lines + ["", f"Dense model.onnx gzip: {dense:,} bytes."]) + "\n"


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=list(METHODS), help="Rows to run (default: all).")
    args = parser.parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    saved = RESULTS / "methods.json"
    # rows of earlier runs stay unless run again, so `--only` refreshes a few
    by_slug = {r["slug"]: r for r in json.loads(saved.read_text())} if saved.is_file() else {}
    for slug in args.only or list(METHODS):
        by_slug[slug] = {"slug": slug, **run(slug, RESULTS / "runs")}
        print(
            f"{slug}: accuracy {by_slug[slug]['accuracy']:.4f}, sparsity {by_slug[slug]['sparsity']:.3f}",
            file=sys.stderr,
        )
        rows = [by_slug[s] for s in METHODS if s in by_slug]
        saved.write_text(json.dumps(rows, indent=2) + "\n")  # after each row: partial results survive
        (RESULTS / "methods.md").write_text(markdown(rows))


if __name__ == "__main__":
    main(sys.argv[1:])
