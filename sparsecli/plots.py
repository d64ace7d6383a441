"""PNG plots for sweeps and sensitivity analysis; matplotlib is the optional extra `plot`.

Without matplotlib a plot is skipped with a note (returned to the caller), never an error.
Figures are drawn on the Agg canvas without pyplot, so no display or global state is touched.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sparsecli.atomic import atomic_path

MISSING = "plot skipped: matplotlib is not installed (pip install 'sparsecli[plot]')"


def _figure(columns: int) -> Any:
    """A Figure with `columns` side-by-side axes, or None without matplotlib."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return None
    figure = Figure(figsize=(5.5 * columns, 4.2), layout="constrained")
    figure.subplots(1, columns, squeeze=False)
    return figure


def _save(figure: Any, path: Path) -> str:
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110)
    return str(path)


def tradeoff(points: list[dict[str, Any]], path: Path) -> tuple[str | None, str | None]:
    """Accuracy vs latency and vs gzip size, Pareto front marked; returns (PNG path, note)."""
    if not points:
        return None, "plot skipped: no sweep point finished"
    figure = _figure(2)
    if figure is None:
        return None, MISSING
    at = points[0]["figures"]["latency_at"]
    costs = (
        ("latency_ms", f"p50 latency, ms ({at['provider']}, batch {at['batch']})"),
        ("size_gzip_bytes", "gzip size, bytes"),
    )
    for axes, (cost, label) in zip(figure.axes, costs, strict=True):
        xs = [p["figures"][cost] for p in points]
        ys = [100 * p["figures"]["accuracy"] for p in points]
        axes.scatter(xs, ys, color="tab:blue", label="points")
        for x, y, p in zip(xs, ys, points, strict=True):
            axes.annotate(p["slug"], (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
        front = sorted((x, y) for x, y, p in zip(xs, ys, points, strict=True) if p["pareto"].get(cost))
        if front:
            axes.plot(*zip(*front, strict=True), color="tab:red", marker="*", markersize=12, label="Pareto front")
        axes.set_xlabel(label)
        axes.set_ylabel("validation accuracy, %")
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
    figure.suptitle("accuracy vs cost (up and left is better)")
    return _save(figure, path), None


def sensitivity(
    curves: dict[str, dict[str, float]], dense_accuracy: float, path: Path
) -> tuple[str | None, str | None]:
    """Validation accuracy drop per layer against that layer's own sparsity; returns (PNG path, note)."""
    figure = _figure(1)
    if figure is None:
        return None, MISSING
    axes = figure.axes[0]
    for fqn, drops in curves.items():
        levels = [float(level) for level in drops]
        axes.plot(levels, list(drops.values()), marker="o", label=fqn)
    axes.set_xlabel("sparsity of this layer alone (one-shot magnitude)")
    axes.set_ylabel("validation accuracy drop, points")
    axes.set_title(f"layer sensitivity (dense accuracy {100 * dense_accuracy:.2f}%)")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    return _save(figure, path), None
