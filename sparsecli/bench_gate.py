"""Regression gates on benchmark documents: against a saved run (`--compare`), or within one run.

`--compare saved.json`: every timed model is matched with the saved run's model at the same position
on the command line, for each provider and batch present in both; the files' paths do not matter, so a
new build of a model compares with the figures saved for the old one. Slowdown = this run's median
round time / the saved one - 1, with a bootstrap interval; the gate fails when the interval's low end
exceeds `--max-slowdown` (slower beyond the noise of either run).

Without `--compare`, `--max-slowdown` gates each model against the run's own baseline (the first
model), using the paired speedup interval: the most trustworthy gate on a shared or changing machine.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sparsecli import bench_stats
from sparsecli.atomic import write_json
from sparsecli.errors import BadInput


def save(document: dict[str, Any], path: Path) -> None:
    write_json(path, document)


def load(path: Path) -> dict[str, Any]:
    try:
        saved = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BadInput(f"--compare {path}: cannot read a saved benchmark ({exc})") from None
    if not isinstance(saved, dict) or saved.get("kind") != "sparsecli.benchmark":
        raise BadInput(f"--compare {path}: not a file written by `sparsecli benchmark --save`")
    return saved


def _timed(document: dict[str, Any]) -> list[int]:
    return [m["index"] for m in document["models"] if m["role"] != "control"]


def compare(current: dict[str, Any], saved: dict[str, Any], max_slowdown: float, saved_path: Path) -> dict[str, Any]:
    """The `comparison` section: each model's slowdown against the saved run, matched by provider and batch."""
    now, before = _timed(current), _timed(saved)
    if len(now) != len(before):
        raise BadInput(
            f"--compare {saved_path}: it holds {len(before)} model(s), this run {len(now)}; models are matched "
            "by position, so benchmark the same list (e.g. just the new build of the one saved model)"
        )
    saved_results = {(r["provider"], r["batch"]): r for r in saved["results"]}
    entries, skipped = [], []
    for result in current["results"]:
        key = (result["provider"], result["batch"])
        if key not in saved_results:
            skipped.append({"provider": key[0], "batch": key[1]})
            continue
        old = saved_results[key]
        entries += [_entry(result, old, current, saved, i, j, max_slowdown) for i, j in zip(now, before, strict=True)]
    if not entries:
        have = ", ".join(f"{r['provider']} batch {r['batch']}" for r in saved["results"])
        raise BadInput(f"--compare {saved_path}: no provider and batch in common with this run; it has {have}")
    return {
        "against": str(saved_path),
        "max_slowdown": max_slowdown,
        "entries": entries,
        "skipped": skipped,
        "passed": not any(e["failed"] for e in entries),
    }


def _entry(result: dict, old: dict, current: dict, saved: dict, i: int, j: int, max_slowdown: float) -> dict:
    change = bench_stats.unpaired_change(old["models"][j]["round_medians_ms"], result["models"][i]["round_medians_ms"])
    return {
        "provider": result["provider"],
        "batch": result["batch"],
        "model": current["models"][i]["name"],
        "saved_model": saved["models"][j]["name"],
        "saved_p50_ms": old["models"][j]["latency_ms"]["p50"],
        "p50_ms": result["models"][i]["latency_ms"]["p50"],
        "slowdown": change["estimate"],
        "interval": {k: change[k] for k in ("low", "high", "confidence")},
        "failed": change["low"] > max_slowdown,
    }


def within_run(document: dict[str, Any], max_slowdown: float) -> dict[str, Any]:
    """The `comparison` section for a gate on the run's own ratios: each model against the baseline."""
    entries = []
    for r in document["ratios"]:
        low, high = 1 / r["interval"]["high"] - 1, 1 / r["interval"]["low"] - 1
        entries.append(
            {
                "provider": r["provider"],
                "batch": r["batch"],
                "model": r["model"],
                "saved_model": r["baseline"],
                "saved_p50_ms": _p50(document, r, 0),
                "p50_ms": _p50(document, r, r["index"]),
                "slowdown": 1 / r["speedup"] - 1,
                "interval": {"low": low, "high": high, "confidence": r["interval"]["confidence"]},
                "failed": low > max_slowdown,
            }
        )
    return {
        "against": "baseline",
        "max_slowdown": max_slowdown,
        "entries": entries,
        "skipped": [],
        "passed": not any(e["failed"] for e in entries),
    }


def _p50(document: dict[str, Any], ratio: dict[str, Any], index: int) -> float:
    result = next(r for r in document["results"] if (r["provider"], r["batch"]) == (ratio["provider"], ratio["batch"]))
    return result["models"][index]["latency_ms"]["p50"]


def failures(comparison: dict[str, Any] | None) -> list[str]:
    if not comparison:
        return []
    return [
        f"{e['model']} {e['provider']} batch {e['batch']}: {e['slowdown']:+.1%} slower than {e['saved_model']} "
        f"(interval {e['interval']['low']:+.1%} to {e['interval']['high']:+.1%}) > {comparison['max_slowdown']:.1%}"
        for e in comparison["entries"]
        if e["failed"]
    ]
