"""One-shot pruning of a small causal LM without fine-tuning: dense vs magnitude vs Wanda vs SparseGPT.

A byte-level GPT (sparsecli.models.gpt) is trained briefly on Python standard-library source; every
method then prunes a copy of it at 50% unstructured and at 2:4, from the same calibration windows, and
perplexity is measured on held-out text (the last 10% of every source file). Every Linear in the blocks
is pruned; embeddings and the LM head stay dense (as in both papers). Magnitude is per layer, like the
other two. Writes bench/results/one_shot.json and .md.

    .venv/bin/python bench/one_shot.py [--steps 800] [--dim 64] [--depth 4]
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import torch
from pydantic import TypeAdapter
from torch import nn

from sparsecli.data.stdlib_text import stdlib_bytes
from sparsecli.models.gpt import gpt, perplexity, pretrain, windows
from sparsecli.passes import PassContext, build, importance, masking
from sparsecli.passes.selection import nm_mask, select_modules
from sparsecli.recipe import PassEntry

RESULTS = Path(__file__).parent / "results"
EXCLUDE = ["lm_head"]


def dense_model(args: argparse.Namespace, train: torch.Tensor) -> tuple[nn.Module, float]:
    """Trained once per configuration and cached in runs/.cache (outside git)."""
    torch.manual_seed(args.seed)
    model = gpt((args.context,), 256, dim=args.dim, depth=args.depth, heads=args.heads)
    key = hashlib.sha256(json.dumps(vars(args), sort_keys=True).encode()).hexdigest()[:12]
    cached = RESULTS.parents[1] / "runs" / ".cache" / f"gpt-{key}.pt"
    if cached.is_file():
        model.load_state_dict(torch.load(cached, weights_only=True))
        return model.eval(), 0.0
    start = time.perf_counter()
    pretrain(model, train, args.steps, args.batch_size, args.lr, args.seed)
    cached.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), cached)
    return model.eval(), time.perf_counter() - start


def magnitude_nm(model: nn.Module, n: int, m: int) -> nn.Module:
    """N:M by |w| per row: the baseline for 2:4 (sparsecli's magnitude pass is unstructured)."""
    for module in select_modules(model, [], EXCLUDE).values():
        weight = module.weight.detach().reshape(module.weight.shape[0], -1)
        masking.set_mask(module, nm_mask(importance.magnitude(weight), n, m).reshape(module.weight.shape))
        masking.bake(module)
    return model


def run_pass(model: nn.Module, entry: dict[str, Any], ctx: PassContext) -> tuple[nn.Module, dict[str, Any]]:
    the_pass = build(TypeAdapter(PassEntry).validate_python({**entry, "exclude": EXCLUDE}))
    the_pass.prepare(model, ctx)
    return the_pass.finish(model), the_pass.describe()


def overall_sparsity(model: nn.Module) -> float:
    weights = [m.weight for m in select_modules(model, [], EXCLUDE).values()]
    return sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)


def methods(pattern: dict[str, Any]) -> dict[str, dict[str, Any] | None]:
    """Method name -> pass entry (None: magnitude N:M, done here)."""
    magnitude = (
        {"kind": "magnitude", "target": pattern["target"], "scope": "per_layer"} if "target" in pattern else None
    )
    return {
        "magnitude": magnitude,
        "wanda": {"kind": "wanda", **pattern},
        "sparsegpt": {"kind": "sparsegpt", **pattern, "blocksize": 128},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, default in [("dim", 64), ("depth", 4), ("heads", 4), ("context", 64), ("steps", 800)]:
        parser.add_argument(f"--{name}", type=int, default=default)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--calibration", type=int, default=64, help="calibration windows of `context` tokens")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)  # 2 shared cores: a second thread mostly spins
    train, val = stdlib_bytes()
    dense, train_s = dense_model(args, train)
    inputs, targets = windows(train, args.context, args.calibration, torch.Generator().manual_seed(args.seed + 1))
    calibration = list(zip(inputs.split(16), targets.split(16), strict=True))
    ctx = PassContext(inputs[:1], calibration=calibration)
    rows = [
        {"pattern": "dense", "method": "dense", "sparsity": 0.0, "perplexity": perplexity(dense, val, args.context)}
    ]
    details = {}
    for label, pattern in [("50%", {"target": 0.5}), ("2:4", {"nm": "2:4"})]:
        for method, entry in methods(pattern).items():
            start = time.perf_counter()
            model, described = (
                (magnitude_nm(copy.deepcopy(dense), 2, 4), {})
                if entry is None
                else run_pass(copy.deepcopy(dense), entry, ctx)
            )
            ppl = perplexity(model, val, args.context)
            rows.append(
                {"pattern": label, "method": method, "sparsity": round(overall_sparsity(model), 4), "perplexity": ppl}
            )
            rows[-1]["prune_s"] = round(time.perf_counter() - start, 2)
            details[f"{method} {label}"] = described
            print(f"{label:>4} {method:>10}: perplexity {ppl:.3f}", flush=True)
    write(args, rows, details, train_s, len(train), len(val))


def write(args: argparse.Namespace, rows: list[dict], details: dict, train_s: float, n_train: int, n_val: int) -> None:
    conditions = {
        **vars(args),
        "train_tokens": n_train,
        "held_out_tokens": n_val,
        "train_s": round(train_s, 1),
        "torch": torch.__version__,
        "params": "blocks' Linear layers pruned; embeddings and lm_head dense",
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "one_shot.json").write_text(
        json.dumps({"conditions": conditions, "rows": rows, "passes": details}, indent=2)
    )
    dense = rows[0]["perplexity"]
    lines = [
        f"Byte-level GPT (dim {args.dim}, depth {args.depth}, context {args.context}), {args.steps} training steps on "
        f"Python stdlib source; held-out perplexity on {n_val} bytes; {args.calibration} calibration windows; "
        "no fine-tuning.",
        "",
        "| sparsity | method | weight sparsity | perplexity | vs dense |",
        "|---|---|---:|---:|---:|",
    ]
    lines += [
        f"| {r['pattern']} | {r['method']} | {r['sparsity']:.2f} | {r['perplexity']:.3f} | "
        f"{r['perplexity'] / dense:.3f}x |"
        for r in rows
    ]
    (RESULTS / "one_shot.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
