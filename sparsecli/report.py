"""The run's report: one dict with stable keys (see schemas/report.schema.json), as JSON, Markdown and a table."""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.table import Table

from sparsecli.atomic import write_json, write_text

SCHEMA_VERSION = 1


@dataclass
class Facts:
    """Everything measured in one run; `build` only arranges it and checks the gates."""

    accuracy: tuple[float, float]
    sparsity: dict[str, Any]
    params: tuple[int, int]
    macs: tuple[int, int]
    sizes: tuple[dict[str, int], dict[str, int]]
    latency_ms: dict[str, dict[str, dict[str, dict[str, float]]]]
    parity: dict[str, float]
    passes: list[dict[str, Any]]
    environment: dict[str, Any] = field(default_factory=dict)
    chain: list[dict[str, Any]] = field(default_factory=list)  # chain_entry per file: dense fp32 -> ... -> int8
    quantization: dict[str, Any] | None = None  # quantize.apply's record
    storage: dict[str, Any] | None = None  # storage.apply's record, per file
    metric: str = "accuracy"  # what `accuracy` holds: the task's metric (accuracy, cosine, perplexity)
    drop_points: float | None = None  # the task's quality loss; default: 100 * (dense - compressed)


def pick_latency(timed: dict[str, Any], keys: dict[str, str]) -> dict[str, Any]:
    """latency[provider][batch][file] -> latency[provider][batch][key] for the files named in `keys`."""
    return {
        provider: {batch: {key: t[name] for key, name in keys.items()} for batch, t in per_batch.items()}
        for provider, per_batch in timed.items()
    }


def chain_entry(stage: str, name: str, accuracy: dict, sizes: dict, timed: dict[str, Any]) -> dict[str, Any]:
    """One step of the size chain: its file's accuracy, sizes (raw, gzip, zstd when measured) and latency."""
    return {
        "stage": stage,
        "file": name,
        "accuracy": accuracy[name],
        **{"size_bytes" if kind == "raw" else f"size_{kind}_bytes": value for kind, value in sizes[name].items()},
        "latency_ms": {provider: {b: t[name] for b, t in per_batch.items()} for provider, per_batch in timed.items()},
    }


def _pair(values: tuple[Any, Any]) -> dict[str, Any]:
    return {"dense": values[0], "compressed": values[1]}


def build(recipe: Any, facts: Facts) -> dict[str, Any]:
    """The report dict; `recipe` is the validated Recipe (only its name, gates and settings are read)."""
    dense_size, model_size = facts.sizes
    mac_reduction = facts.macs[0] / facts.macs[1] if facts.macs[1] else None
    speedup = {
        provider: {batch: t["dense"]["p50"] / t["compressed"]["p50"] for batch, t in per_batch.items()}
        for provider, per_batch in facts.latency_ms.items()
    }
    result: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "name": recipe.name,
        "accuracy": {
            **_pair(facts.accuracy),
            "metric": facts.metric,
            "drop_points": 100.0 * (facts.accuracy[0] - facts.accuracy[1])
            if facts.drop_points is None
            else facts.drop_points,
        },
        "sparsity": {
            "overall": facts.sparsity["overall"],
            "per_layer": {k: v["sparsity"] for k, v in facts.sparsity["per_layer"].items()},
        },
        "layers": facts.sparsity["per_layer"],
        "params": _pair(facts.params),
        "macs": {**_pair(facts.macs), "reduction": mac_reduction},
        "size_bytes": _pair((dense_size["raw"], model_size["raw"])),
        "size_gzip_bytes": _pair((dense_size["gzip"], model_size["gzip"])),
        "latency_ms": facts.latency_ms,
        "throughput": {
            provider: {batch: {k: t[k]["throughput"] for k in ("dense", "compressed")} for batch, t in pb.items()}
            for provider, pb in facts.latency_ms.items()
        },
        "speedup": speedup,
        "speedup_efficiency": {
            provider: {batch: s / mac_reduction for batch, s in pb.items()} if mac_reduction else {}
            for provider, pb in speedup.items()
        },
        "parity_max_abs_diff": facts.parity,
        "passes": facts.passes,
        "environment": {"python": platform.python_version(), **facts.environment},
    }
    if "zstd" in dense_size and "zstd" in model_size:
        result["size_zstd_bytes"] = _pair((dense_size["zstd"], model_size["zstd"]))
    result["chain"] = facts.chain
    result.update({k: v for k, v in (("quantization", facts.quantization), ("storage", facts.storage)) if v})
    result["gates"] = check_gates(recipe.gates, result)
    return result


def check_gates(gates: Any, result: dict[str, Any]) -> list[dict[str, Any]]:
    """Each configured gate as {name, value, threshold, passed}."""
    out = []

    def gate(name: str, value: float, threshold: float, passed: bool) -> None:
        out.append({"name": name, "value": value, "threshold": threshold, "passed": bool(passed)})

    if gates.max_accuracy_drop is not None:
        drop = result["accuracy"]["drop_points"]
        gate("max_accuracy_drop", drop, gates.max_accuracy_drop, drop <= gates.max_accuracy_drop)
    if gates.min_sparsity is not None:
        value = result["sparsity"]["overall"]
        gate("min_sparsity", value, gates.min_sparsity, value >= gates.min_sparsity)
    if gates.min_speedup is not None:
        for provider, per_batch in result["speedup"].items():
            for batch, value in per_batch.items():
                gate(f"min_speedup[{provider},{batch}]", value, gates.min_speedup, value >= gates.min_speedup)
    if gates.max_size_bytes is not None:
        size = result["size_bytes"]["compressed"]
        gate("max_size_bytes", size, gates.max_size_bytes, size <= gates.max_size_bytes)
    return out


def failed_gates(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [g for g in result.get("gates", []) if not g["passed"]]


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "-"


def summary_rows(result: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(metric, dense, compressed, ratio) rows shared by the terminal table and Markdown."""
    acc, params, macs = result["accuracy"], result["params"], result["macs"]
    size, gz = result["size_bytes"], result["size_gzip_bytes"]
    rows = [
        (acc["metric"], f"{acc['dense']:.4f}", f"{acc['compressed']:.4f}", f"{-acc['drop_points']:+.2f} pt"),
        ("weight sparsity", "", f"{result['sparsity']['overall']:.3f}", ""),
        ("params", f"{params['dense']:,}", f"{params['compressed']:,}", _ratio(params["dense"], params["compressed"])),
        ("MACs", f"{macs['dense']:,}", f"{macs['compressed']:,}", _ratio(macs["dense"], macs["compressed"])),
        ("size (bytes)", f"{size['dense']:,}", f"{size['compressed']:,}", _ratio(size["dense"], size["compressed"])),
        ("size gzip (bytes)", f"{gz['dense']:,}", f"{gz['compressed']:,}", _ratio(gz["dense"], gz["compressed"])),
    ]
    if "size_zstd_bytes" in result:
        zs = result["size_zstd_bytes"]
        rows.append(
            ("size zstd (bytes)", f"{zs['dense']:,}", f"{zs['compressed']:,}", _ratio(zs["dense"], zs["compressed"]))
        )
    for provider, per_batch in result["latency_ms"].items():
        for batch, t in per_batch.items():
            rows.append(
                (
                    f"p50 ms {provider} batch {batch}",
                    f"{t['dense']['p50']:.3f}",
                    f"{t['compressed']['p50']:.3f}",
                    f"{result['speedup'][provider][batch]:.2f}x speed",
                )
            )
    return rows


def table(result: dict[str, Any]) -> Table:
    t = Table(title=f"sparsecli: {result['name']}")
    for column in ("metric", "dense", "compressed", "ratio"):
        t.add_column(column, justify="left" if column == "metric" else "right")
    for row in summary_rows(result):
        t.add_row(*row)
    for g in result["gates"]:
        mark = "[green]pass[/]" if g["passed"] else "[red]FAIL[/]"
        t.add_row(f"gate {g['name']}", f"{g['threshold']:g}", f"{g['value']:.4g}", mark)
    return t


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"# sparsecli report: {result['name']}",
        "",
        "| metric | dense | compressed | ratio |",
        "|---|---:|---:|---:|",
    ]
    lines += [f"| {' | '.join(row)} |" for row in summary_rows(result)]
    if result["gates"]:
        lines += ["", "| gate | value | threshold | result |", "|---|---:|---:|---|"]
        lines += [
            f"| {g['name']} | {g['value']:.4g} | {g['threshold']:g} | {'pass' if g['passed'] else 'FAIL'} |"
            for g in result["gates"]
        ]
    lines += [
        "",
        "## Sparsity per layer (measured on model.onnx)",
        "",
        "| layer | shape | params | sparsity |",
        "|---|---|---:|---:|",
    ]
    lines += [
        f"| {name} | {'x'.join(map(str, v['shape']))} | {v['params']:,} | {v['sparsity']:.3f} |"
        for name, v in result["layers"].items()
    ]
    return "\n".join(lines + chain_markdown(result)) + "\n"


def chain_markdown(result: dict[str, Any]) -> list[str]:
    """The size chain table, then how INT8 was chosen (every setting tried, with its numbers)."""
    chain = result.get("chain") or []
    timings = [(p, b) for p, per_batch in (chain[0]["latency_ms"] if chain else {}).items() for b in per_batch]
    metric = result["accuracy"]["metric"]
    lines = ["", "## Size chain (each file measured with onnxruntime)", ""]
    lines += [f"| stage | file | {metric} | bytes | gzip | zstd |" + "".join(f" p50 ms {p} b{b} |" for p, b in timings)]
    lines += ["|---|---|---:|---:|---:|---:|" + "---:|" * len(timings)]
    for c in chain:
        sizes = [f"{c[k]:,}" if k in c else "-" for k in ("size_bytes", "size_gzip_bytes", "size_zstd_bytes")]
        times = [f"{c['latency_ms'][p][b]['p50']:.3f}" for p, b in timings]
        lines.append(f"| {c['stage']} | {c['file']} | {c['accuracy']:.4f} | {' | '.join(sizes + times)} |")
    q = result.get("quantization")
    if q:
        lines += ["", f"## INT8: {q['setting']} ({q['format']}), quantize: {q['mode']}", "", q["reason"]]
        if q["tried"]:
            lines += ["", f"| setting | {metric} | bytes | speedup vs fp32 | parity |", "|---|---:|---:|---:|---|"]
            lines += [
                f"| {t['setting']} | {t['accuracy']:.4f} | {t['size_bytes']:,} | {t['speedup_vs_fp32']:.2f}x | "
                f"{'pass' if t['passed'] else '; '.join(t['problems'])} |"
                for t in q["tried"]
            ]
        lines += [f"- skipped {mode}: {why}" for mode, why in q["skipped"].items()]
    for name, s in (result.get("storage") or {}).items():
        lines.append(f"- sparse initializers in {name}: {'kept' if s['applied'] else 'not kept'}, {s['reason']}")
    return lines


def write(run_dir: Path, result: dict[str, Any]) -> None:
    write_json(run_dir / "report.json", result)
    write_text(run_dir / "report.md", markdown(result))


def load(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def schema() -> dict[str, Any]:
    """The JSON Schema of report.json, shipped with the package."""
    return json.loads((Path(__file__).parent / "schemas" / "report.schema.json").read_text())
