"""Layer sensitivity: how much accuracy each layer loses when pruned alone, and per-layer targets from it.

Each selected layer of the dense model is magnitude-pruned alone, one-shot, at several levels,
without fine-tuning; the validation accuracy drop is that layer's curve (Han et al., 2015 used the
same scan to set per-layer thresholds). From the curves, `allocate` spreads a requested overall
sparsity so that layers where pruning costs accuracy keep more weights; the result is a recipe
with `scope: per_layer` targets that `sparsecli prune` runs like any other.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn

from sparsecli import plots
from sparsecli import recipe as recipes
from sparsecli.atomic import write_json, write_text
from sparsecli.console import UI, advance
from sparsecli.errors import BadInput
from sparsecli.overrides import apply_override, parse_override

SCHEMA_VERSION = 1
LEVELS = (0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98)
STEP = 0.005  # sparsity added to one layer per greedy step
TIE_SLOPE = 1e-3  # points of drop per unit sparsity added to every curve: flat stretches still rank by size


def magnitude_spec(recipe: recipes.Recipe) -> Any:
    """passes[0] when it is a magnitude pass (its include/exclude choose the layers), else None."""
    first = recipe.passes[0] if recipe.passes else None
    if first is not None and first.kind != "magnitude":
        raise BadInput(f"sensitivity writes a magnitude pass as passes[0]; the recipe's is kind {first.kind!r}")
    return first


@torch.no_grad()
def curves(model: nn.Module, layers: dict[str, nn.Module], loader: Any, levels: tuple[float, ...], ui: UI) -> dict:
    """Accuracy drop in points per layer and level, each layer pruned alone (weights restored after)."""
    from sparsecli.passes import importance
    from sparsecli.passes.selection import per_layer_topk
    from sparsecli.train import evaluate

    dense = evaluate(model, loader)
    drops: dict[str, dict[str, float]] = {}
    with ui.task("sensitivity", len(layers) * len(levels)) as bar:
        for fqn, module in layers.items():
            original = module.weight.detach().clone()
            scores = {fqn: importance.magnitude(original)}
            drops[fqn] = {}
            for level in levels:
                module.weight.copy_(original * per_layer_topk(scores, {fqn: level})[fqn])
                drops[fqn][f"{level:g}"] = 100.0 * (dense - evaluate(model, loader))
                advance(bar, fqn)
            module.weight.copy_(original)
    return {"dense_accuracy": dense, "drops": drops}


def _envelope(drops: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """(levels, drop) from 0, made nondecreasing and strictly rising: noise never rewards more pruning."""
    levels = np.array([0.0, *map(float, drops)])
    values = np.maximum.accumulate(np.maximum(0.0, [0.0, *drops.values()]))
    return levels, values + TIE_SLOPE * levels


def allocate(drops: dict[str, dict[str, float]], sizes: dict[str, int], target: float) -> dict[str, float]:
    """Per-layer targets whose weighted mean is `target`, by greedy marginal cost.

    Start every layer at 0; repeatedly add STEP sparsity to the layer whose next step costs the
    least interpolated accuracy drop per weight removed, until `target` of all the layers' weights
    are gone (the last step is partial, so the total is exact). A layer never goes past the highest
    level measured. Small sensitive layers end low, large tolerant ones high.
    """
    curves_ = {fqn: _envelope(d) for fqn, d in drops.items()}
    cap = {fqn: levels[-1] for fqn, (levels, _) in curves_.items()}
    total = sum(sizes.values())
    if target * total > sum(cap[f] * sizes[f] for f in sizes) + 1e-9:
        raise BadInput(f"--target {target:g} is above the highest level measured ({max(cap.values()):g})")
    sparsity = dict.fromkeys(drops, 0.0)
    remaining = target * total

    def cost(fqn: str) -> float:
        levels, values = curves_[fqn]
        s = sparsity[fqn]
        step = min(STEP, cap[fqn] - s)
        return float(np.interp(s + step, levels, values) - np.interp(s, levels, values)) / (step * sizes[fqn])

    while remaining > 1e-9:
        open_layers = [f for f in sparsity if sparsity[f] < cap[f] - 1e-12]
        fqn = min(open_layers, key=cost)
        step = min(STEP, cap[fqn] - sparsity[fqn], remaining / sizes[fqn])
        sparsity[fqn] += step
        remaining -= step * sizes[fqn]
    return {fqn: round(float(s), 4) for fqn, s in sparsity.items()}


def recipe_text(recipe_path: Path, overrides: list[str], loaded: recipes.Recipe, targets: dict, target: float) -> str:
    """The user's recipe (with its --set overrides) whose passes[0] is magnitude with the per-layer targets."""
    data = yaml.safe_load(recipe_path.read_text(encoding="utf-8"))
    for item in overrides:
        apply_override(data, *parse_override(item))
    first = (data.get("passes") or [{"kind": "magnitude"}])[0]
    first.update(target=target, scope="per_layer", per_layer=targets)
    data["passes"] = [first, *(data.get("passes") or [])[1:]]
    data["name"] = f"{loaded.name}-sensitivity"
    data.pop("output", None)  # its own run folder, never the analysed recipe's
    for section, key, value in (("data", "path", loaded.data.path), ("model", "checkpoint", loaded.model.checkpoint)):
        if value is not None:  # absolute: the new file may live in another folder
            data[section][key] = str(Path(value).resolve())
    header = f"# Per-layer targets from `sparsecli analyze --sensitivity {recipe_path}` (overall {target:g}).\n"
    return header + yaml.safe_dump(data, sort_keys=False)


def analyze(
    recipe_path: Path, overrides: list[str], ui: UI, target: float | None = None, out: Path | None = None
) -> dict[str, Any]:
    """Scan the layers, allocate `target`, write the recipe, sensitivity.json and sensitivity.png."""
    from sparsecli import baseline
    from sparsecli.passes.selection import select_modules

    loaded = recipes.load(recipe_path, overrides)
    spec = magnitude_spec(loaded)
    target = target if target is not None else (spec.target if spec is not None else None)
    if target is None or not 0 < target < 1:
        raise BadInput(f"--target must be in (0, 1); got {target} (give --target or a magnitude passes[0])")
    data = baseline.load_data(loaded)
    model = copy.deepcopy(baseline.dense_model(loaded, data, ui)).eval()
    layers = select_modules(model, spec.include if spec else [], spec.exclude if spec else [])
    ui.stage(f"sensitivity: {len(layers)} layers x {len(LEVELS)} levels, one-shot, no fine-tuning")
    scan = curves(model, layers, data.loader("val", 512), LEVELS, ui)
    sizes = {fqn: int(m.weight.numel()) for fqn, m in layers.items()}
    targets = allocate(scan["drops"], sizes, target)
    folder = loaded.run_dir.parent / f"{loaded.name}-sensitivity"
    out = out or folder / "recipe.yaml"
    text = recipe_text(recipe_path, overrides, loaded, targets, target)
    recipes.parse(text, str(out), out.parent)  # what we write must load
    write_text(out, text)
    plot, note = plots.sensitivity(scan["drops"], scan["dense_accuracy"], folder / "sensitivity.png")
    doc = {
        "schema_version": SCHEMA_VERSION,
        "name": loaded.name,
        "recipe": str(recipe_path),
        "dense_accuracy": scan["dense_accuracy"],
        "levels": list(LEVELS),
        "target": target,
        "overall_sparsity": sum(targets[f] * sizes[f] for f in sizes) / sum(sizes.values()),
        "layers": {f: {"params": sizes[f], "drops": scan["drops"][f], "target": targets[f]} for f in layers},
        "recipe_out": str(out),
        "plot": plot,
        "plot_note": note,
    }
    write_json(folder / "sensitivity.json", doc)
    return doc


def table(doc: dict[str, Any]) -> Any:
    from rich.table import Table

    t = Table(title=f"sensitivity: {doc['name']} (drop in points; dense {100 * doc['dense_accuracy']:.2f}%)")
    for column in ("layer", "params", *map(str, doc["levels"]), "target"):
        t.add_column(column, justify="left" if column == "layer" else "right")
    for fqn, layer in doc["layers"].items():
        t.add_row(fqn, f"{layer['params']:,}", *[f"{d:.1f}" for d in layer["drops"].values()], f"{layer['target']:.3f}")
    return t
