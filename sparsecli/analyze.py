"""`sparsecli analyze`: per-layer figures of one model, always measured on an ONNX file.

An .onnx file is read as it is. A checkpoint (.pt) or a recipe (.yaml) is first turned into the
ONNX file it stands for, so every figure describes what would ship and means what it means in
prune reports (the counting functions are in `measure.py`):
- recipe: its run folder's `model.onnx` when the run has finished, else the recipe's model freshly
  built (with `model.checkpoint` when given), exported at the recipe's settings;
- checkpoint: the model of the recipe beside it (a run folder's `recipe.yaml`) or of `--recipe`,
  with the checkpoint's weights (and, for a structurally pruned model, its architecture).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from sparsecli import measure
from sparsecli.errors import BadInput


def parse_nm(text: str) -> tuple[int, int]:
    """'2:4' -> (2, 4)."""
    n, sep, m = text.partition(":")
    if not (sep and n.isdigit() and m.isdigit() and 0 < int(n) < int(m)):
        raise BadInput(f"--nm: expected N:M with 0 < N < M, e.g. 2:4, got {text!r}")
    return int(n), int(m)


def load_inputs(data: str, samples: int) -> np.ndarray:
    """`digits` (the bundled data set) or an .npz file's `x` array, at most `samples` rows."""
    from sparsecli.data import sources

    if data == "digits":
        x = sources.digits()[0]
    else:
        path = Path(data)
        if not path.is_file():
            raise BadInput(f"--data: {data!r} is neither 'digits' nor an existing .npz file")
        try:
            with np.load(path, allow_pickle=False) as arrays:
                if "x" not in arrays.files:
                    raise BadInput(f"--data: {path} has no array 'x' (has {sorted(arrays.files)})")
                x = arrays["x"]
        except (OSError, ValueError) as exc:
            raise BadInput(f"--data: cannot read {path} as .npz: {exc}") from None
    return np.asarray(x[:samples], dtype=np.float32)


def _recipe_model(recipe_path: Path, checkpoint: Path | None, folder: Path) -> tuple[Path, str]:
    """Export the recipe's model (with `checkpoint`'s weights when given) to ONNX in `folder`."""
    from sparsecli import baseline
    from sparsecli import recipe as recipes
    from sparsecli.export import export_onnx
    from sparsecli.models.source import load_checkpoint

    recipe = recipes.load(recipe_path)
    data = baseline.load_data(recipe)
    model = baseline.fresh_model(recipe, data)
    weights = checkpoint or recipe.model.checkpoint
    if weights is not None:
        load_checkpoint(model, weights)
    path = export_onnx(model, baseline.example_input(recipe, data), folder / "model.onnx", recipe.export.opset, True)
    return path, f"{weights or 'freshly initialised weights'} in the model of {recipe_path}"


def resolve(model: Path, recipe: Path | None, folder: Path) -> tuple[Path, str]:
    """The ONNX file that stands for `model`, and a line saying what it is."""
    if not model.is_file():
        raise BadInput(f"MODEL: {model} not found")
    suffix = model.suffix.lower()
    if suffix == ".onnx":
        return model, str(model)
    if suffix in (".yaml", ".yml"):
        from sparsecli import recipe as recipes

        finished = recipes.load(model).run_dir / "model.onnx"
        if finished.is_file():
            return finished, f"{finished} (the run of {model})"
        return _recipe_model(model, None, folder)
    if suffix in (".pt", ".pth"):
        beside = model.parent / "recipe.yaml"
        source = recipe or (beside if beside.is_file() else None)
        if source is None:
            raise BadInput(f"MODEL: a checkpoint holds weights, not the model; pass --recipe for {model}")
        return _recipe_model(source, model, folder)
    raise BadInput(f"MODEL: expected an .onnx file, a checkpoint (.pt) or a recipe (.yaml), got {model}")


def layers(path: Path, eps: float, nm: tuple[int, int]) -> dict[str, dict[str, Any]]:
    """Per weighted layer: op, shape, params, zeros, near zeros, norms, N:M compliance, zero rows, MACs."""
    model = measure.read_onnx(path)
    shapes = measure.output_shapes(model)
    return {
        layer.name: {
            "op": layer.op,
            **measure.weight_stats(layer.weight, eps=eps, nm=nm, in_axis=layer.in_axis, out_axis=layer.out_axis),
            "macs": measure.layer_macs(layer, shapes),
        }
        for layer in measure.onnx_layers(model)
    }


def analyze(
    model: Path,
    *,
    recipe: Path | None = None,
    eps: float = 1e-3,
    nm: str = "2:4",
    data: str | None = None,
    samples: int = 512,
) -> dict[str, Any]:
    """The analysis as one JSON-safe dict: per-layer weights, totals, and with `data` the activations."""
    n_m = parse_nm(nm)
    with tempfile.TemporaryDirectory() as folder:
        path, source = resolve(Path(model), recipe, Path(folder))
        per_layer = layers(path, eps, n_m)
        result: dict[str, Any] = {"model": source, "eps": eps, "nm": nm, "layers": per_layer}
        params = sum(v["params"] for v in per_layer.values())
        result["total"] = {
            "params": params,
            "sparsity": sum(v["sparsity"] * v["params"] for v in per_layer.values()) / max(1, params),
            "near_zero": sum(v["near_zero"] * v["params"] for v in per_layer.values()) / max(1, params),
            "macs": sum(v["macs"] or 0 for v in per_layer.values()),
        }
        if data is not None:
            x = load_inputs(data, samples)
            zeros, near, total = measure.small_counts(x, eps)
            result["input"] = {"samples": len(x), "sparsity": zeros / max(1, total), "near_zero": near / max(1, total)}
            try:
                result["activations"] = measure.onnx_activation_sparsity(path, x, eps)
            except Exception as exc:  # onnxruntime's errors for a wrong input shape are many types
                raise BadInput(f"--data: the model does not accept inputs of shape {list(x.shape)}: {exc}") from None
    return result


def table(result: dict[str, Any]):
    """Rich tables for people: weights per layer, then activations when measured."""
    from rich.console import Group
    from rich.table import Table

    weights = Table(title=f"weights of {result['model']}  (near zero: |w| < {result['eps']:g})")
    for column in ("layer", "op", "shape", "params", "zero %", "near-0 %", "L1", "L2", result["nm"], "0-rows", "MACs"):
        weights.add_column(column, justify="left" if column in ("layer", "op", "shape") else "right")
    for name, v in result["layers"].items():
        nm = "-" if v["nm_compliance"] is None else f"{100 * v['nm_compliance']:.1f}%"
        weights.add_row(
            name, v["op"], "x".join(map(str, v["shape"])), f"{v['params']:,}", f"{100 * v['sparsity']:.1f}",
            f"{100 * v['near_zero']:.1f}", f"{v['l1']:.4g}", f"{v['l2']:.4g}", nm,
            f"{v['zero_channels']}/{v['channels']}", "-" if v["macs"] is None else f"{v['macs']:,}",
        )  # fmt: skip
    t = result["total"]
    weights.add_row("total", "", "", f"{t['params']:,}", f"{100 * t['sparsity']:.1f}", f"{100 * t['near_zero']:.1f}")
    parts: list[Any] = [weights]
    if "activations" in result:
        i = result["input"]
        acts = Table(title=f"activations on {i['samples']} samples (onnxruntime)")
        for column in ("output of", "op", "zero %", "near-0 %"):
            acts.add_column(column, justify="left" if column in ("output of", "op") else "right")
        acts.add_row("input data", "", f"{100 * i['sparsity']:.1f}", f"{100 * i['near_zero']:.1f}")
        for name, a in result["activations"].items():
            acts.add_row(name, a["op"], f"{100 * a['sparsity']:.1f}", f"{100 * a['near_zero']:.1f}")
        parts.append(acts)
    return Group(*parts)
