"""A grid of prune runs from `--set key=a,b,c` axes: one run folder per point, sweep.json, a trade-off plot.

Each point is a normal `pipeline.run` in its own folder under the sweep folder, so the dense
baseline cached there (`.cache/`) is trained once and every point only fine-tunes. A failed
point is recorded and the rest go on; a rerun reuses every point whose report.json exists.
"""

from __future__ import annotations

import itertools
import re
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.table import Table

from sparsecli import plots, report
from sparsecli import recipe as recipes
from sparsecli.atomic import write_json
from sparsecli.console import UI
from sparsecli.errors import BadInput, GateFailed, RunFailed, SparsecliError
from sparsecli.overrides import parse_override

SCHEMA_VERSION = 1


def split_values(raw: str) -> list[str]:
    """Split on commas outside brackets, braces and quotes: `0.5,0.7` is two values, `[1, 2]` one."""
    parts, depth, quote, start = [], 0, "", 0
    for i, char in enumerate(raw):
        if quote:
            quote = "" if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(raw[start:i])
            start = i + 1
    return [*parts, raw[start:]]


def grid(overrides: list[str]) -> tuple[dict[str, list[str]], list[str]]:
    """`--set` items -> (axes: key -> raw values, fixed `--set` items); a comma list makes an axis."""
    axes: dict[str, list[str]] = {}
    fixed: list[str] = []
    for item in overrides:
        key, sep, raw = item.partition("=")
        values = split_values(raw) if sep else [raw]
        if len(values) == 1:
            fixed.append(item)
            continue
        if any(not v.strip() for v in values):
            raise BadInput(f"--set {item!r}: empty value in the comma list")
        if key.strip() in axes:
            raise BadInput(f"--set {key.strip()}: given twice as a sweep axis")
        axes[key.strip()] = [v.strip() for v in values]
    if not axes:
        raise BadInput("sweep needs at least one --set key=a,b,... with a comma list (a grid axis)")
    return axes, fixed


def _slug(keys: list[str], values: tuple[str, ...]) -> str:
    """Folder name of a point, e.g. `target-0.5`; full keys when the last parts of two keys clash."""
    short = [k.rsplit(".", 1)[-1] for k in keys]
    names = short if len(set(short)) == len(short) else keys
    text = "_".join(f"{n}-{v}" for n, v in zip(names, values, strict=True))
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "point"


def points(axes: dict[str, list[str]]) -> list[dict[str, Any]]:
    """Every combination of the axes: its slug and its overrides (key -> value as parsed YAML)."""
    keys = list(axes)
    out = []
    for values in itertools.product(*axes.values()):
        parsed = {k: parse_override(f"{k}={v}")[1] for k, v in zip(keys, values, strict=True)}
        items = [f"{k}={v}" for k, v in zip(keys, values, strict=True)]
        out.append({"slug": _slug(keys, values), "overrides": parsed, "set": items})
    return out


def figures(result: dict[str, Any]) -> dict[str, Any]:
    """The key numbers of one point's report; latency is the first provider and batch size timed."""
    provider = next(iter(result["latency_ms"]))
    batch = next(iter(result["latency_ms"][provider]))
    return {
        "accuracy_dense": result["accuracy"]["dense"],
        "accuracy": result["accuracy"]["compressed"],
        "drop_points": result["accuracy"]["drop_points"],
        "sparsity": result["sparsity"]["overall"],
        "params": result["params"]["compressed"],
        "macs": result["macs"]["compressed"],
        "size_bytes": result["size_bytes"]["compressed"],
        "size_gzip_bytes": result["size_gzip_bytes"]["compressed"],
        "latency_ms": result["latency_ms"][provider][batch]["compressed"]["p50"],
        "latency_at": {"provider": provider, "batch": int(batch)},
        "speedup": result["speedup"][provider][batch],
        "gates_passed": not report.failed_gates(result),
    }


def pareto(values: list[tuple[float, float]]) -> list[bool]:
    """True where no other point has at least the accuracy at no more cost, and is better in one."""
    return [not any(a2 >= a and c2 <= c and (a2 > a or c2 < c) for a2, c2 in values) for a, c in values]


def mark_fronts(done: list[dict[str, Any]]) -> None:
    for cost in ("latency_ms", "size_gzip_bytes"):
        flags = pareto([(p["figures"]["accuracy"], p["figures"][cost]) for p in done])
        for point, flag in zip(done, flags, strict=True):
            point["pareto"][cost] = flag


@contextmanager
def _stop_on_signal() -> Iterator[dict[str, bool]]:
    """Ctrl-C or SIGTERM stops the whole sweep (a point's run turns it into RunFailed; this remembers it)."""
    seen = {"stopped": False}

    def handler(signum: int, frame: Any) -> None:
        seen["stopped"] = True
        raise KeyboardInterrupt

    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield seen
    finally:
        for sig, previous in old.items():
            signal.signal(sig, previous)


def run_point(recipe_path: Path, items: list[str], point: dict[str, Any], ui: UI) -> None:
    """Run one point (or reuse its finished report); records status, figures or error on `point`."""
    from sparsecli import pipeline

    run_dir = Path(point["run_dir"])
    point.update(status="failed", error=None, figures=None, pareto={}, reused=False)
    try:
        if (run_dir / "report.json").is_file():
            result, point["reused"] = report.load(run_dir / "report.json"), True
        else:
            ui.stage(f"sweep point {point['slug']}")
            recipe = recipes.load(recipe_path, items)
            result = pipeline.run(recipe, ui, overwrite=True)  # no report.json: an unfinished point restarts
        point.update(status="ok", figures=figures(result))
    except SparsecliError as exc:
        point["error"] = exc.render()
        ui.note(f"[red]point {point['slug']} failed[/]: {exc}")


def run(recipe_path: Path, overrides: list[str], ui: UI, output: Path | None = None) -> dict[str, Any]:
    """Run every point of the grid; returns sweep.json's content (also written, after every point)."""
    axes, fixed = grid(overrides)
    base = recipes.load(recipe_path, fixed)  # bad fixed overrides or recipe: fail before any work
    folder = output or Path("runs") / f"{base.name}-sweep"
    todo = points(axes)
    for point in todo:
        point["run_dir"], point["status"] = str(folder / point["slug"]), "pending"
    doc = {"schema_version": SCHEMA_VERSION, "name": base.name, "recipe": str(recipe_path), "folder": str(folder)}
    doc.update(axes={k: [parse_override(f"{k}={v}")[1] for v in vs] for k, vs in axes.items()})
    doc.update(fixed=fixed, points=todo, plot=None, plot_note=None)
    try:
        with _stop_on_signal() as signals:
            for point in todo:
                own = [f"output={point['run_dir']}", f"name={base.name}-{point['slug']}"]
                run_point(recipe_path, [*fixed, *point["set"], *own], point, ui)
                write_json(folder / "sweep.json", doc)
                if signals["stopped"]:
                    raise KeyboardInterrupt
    except KeyboardInterrupt:
        write_json(folder / "sweep.json", doc)
        raise RunFailed(f"sweep interrupted; rerun the same command to finish the missing points ({folder})") from None
    finished = [p for p in todo if p["status"] == "ok"]
    mark_fronts(finished)
    doc["plot"], doc["plot_note"] = plots.tradeoff(finished, folder / "sweep.png")
    write_json(folder / "sweep.json", doc)
    return doc


def outcome(doc: dict[str, Any]) -> SparsecliError | None:
    """The error the CLI exits with after printing: 3 when a point failed, 1 when a point's gate failed."""
    failed = [p["slug"] for p in doc["points"] if p["status"] != "ok"]
    if failed:
        return RunFailed(f"{len(failed)} of {len(doc['points'])} sweep points failed: {', '.join(failed)}")
    gated = [p["slug"] for p in doc["points"] if not p["figures"]["gates_passed"]]
    return GateFailed(f"gate failed in sweep points: {', '.join(gated)}") if gated else None


def table(doc: dict[str, Any]) -> Table:
    t = Table(title=f"sparsecli sweep: {doc['name']} ({doc['folder']})")
    columns = ("point", "status", "accuracy", "sparsity", "gzip bytes", "p50 ms", "speedup", "pareto")
    for column in columns:
        t.add_column(column, justify="left" if column in ("point", "status", "pareto") else "right")
    for p in doc["points"]:
        f = p.get("figures")
        if f is None:
            t.add_row(p["slug"], f"[red]{p['status']}[/]", *[""] * 6)
            continue
        front = ", ".join(k.split("_")[0] for k, v in p["pareto"].items() if v)
        status = "reused" if p["reused"] else "ok"
        t.add_row(
            p["slug"],
            status if f["gates_passed"] else f"{status}, [red]gate FAIL[/]",
            f"{f['accuracy']:.4f}",
            f"{f['sparsity']:.3f}",
            f"{f['size_gzip_bytes']:,}",
            f"{f['latency_ms']:.3f}",
            f"{f['speedup']:.2f}x",
            front,
        )
    return t
