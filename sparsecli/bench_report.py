"""`sparsecli benchmark` end to end: the request from the command line, one call that runs it, and its output
as a rich table or Markdown (the JSON document is schemas/benchmark.schema.json)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from sparsecli import bench, bench_gate, bench_stats
from sparsecli.bench_inputs import InputSpec, parse_batches, parse_shape
from sparsecli.errors import BadInput


@dataclass
class Request:
    models: list[Path]
    batches: list[int | None]
    spec: InputSpec
    settings: bench.Settings
    save: Path | None = None
    compare: Path | None = None
    max_slowdown: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def request(
    models: list[Path],
    *,
    batch: str | None = None,
    shapes: list[str] | None = None,
    seq_len: int | None = None,
    inputs: Path | None = None,
    save: Path | None = None,
    compare: Path | None = None,
    max_slowdown: str | None = None,
    **settings: Any,
) -> Request:
    """Check the command line's values and turn them into a Request; BadInput names the wrong option."""
    if not models:
        raise BadInput("give at least one ONNX file; the first is the baseline")
    bench.check_provider(settings.get("provider", "cpu"))  # unknown or not installed: lists the available ones
    choices = {"graph_opt": bench.GRAPH_OPT, "execution_mode": bench.EXECUTION_MODE}
    for key, allowed in choices.items():
        if key in settings and settings[key] not in allowed:
            flag = "--" + key.replace("_", "-")
            raise BadInput(f"{flag} {settings[key]!r}: choose one of {', '.join(allowed)}")
    if settings.get("iterations") is not None and settings.get("min_time") is not None:
        raise BadInput("give --iterations or --min-time, not both")
    if inputs is not None and (shapes or seq_len):
        raise BadInput("--inputs gives the arrays; --shape and --seq-len do not apply with it")
    if inputs is not None and not inputs.is_file():
        raise BadInput(f"--inputs {inputs}: no such file")
    slowdown = None
    if max_slowdown is not None:
        try:
            slowdown = bench_stats.parse_percent(max_slowdown)
        except ValueError as exc:
            raise BadInput(f"--max-slowdown {exc}") from None
    spec = InputSpec(shapes=dict(parse_shape(s) for s in shapes or []), seq_len=seq_len, npz=inputs)
    batches: list[int | None] = parse_batches(batch) if batch else [None]
    s = bench.Settings(**{k: v for k, v in settings.items() if v is not None})
    return Request(list(models), batches, spec, s, save, compare, slowdown)


def execute(req: Request, ui) -> dict[str, Any]:
    """Run the benchmark, then the gate and --save; the document, with `comparison` when a gate applies."""
    saved = bench_gate.load(req.compare) if req.compare else None  # a bad file fails before minutes of timing
    with ui.task("timing rounds", total=100 * len(req.batches)) as progress:
        seen: list[str] = []

        def advance(label: str, done: int, total: int) -> None:
            batch = label.removesuffix(bench.WAITING)
            if batch not in seen:
                seen.append(batch)
            if progress is not None:
                progress.update(progress.task_ids[0], completed=100 * (len(seen) - 1) + done, status=label)

        document = bench.run(req.models, req.batches, req.spec, req.settings, advance)
    if saved is not None:
        document["comparison"] = bench_gate.compare(document, saved, _slowdown(req), req.compare)
    elif req.max_slowdown is not None:
        document["comparison"] = bench_gate.within_run(document, req.max_slowdown)
    if req.save:
        bench_gate.save(document, req.save)
    return document


def _slowdown(req: Request) -> float:
    return 0.05 if req.max_slowdown is None else req.max_slowdown


# -- rendering -------------------------------------------------------------------------------------------


def _latency_rows(document: dict[str, Any], result: dict[str, Any]) -> list[list[str]]:
    ratios = {r["index"]: r for r in document["ratios"] if (r["provider"], r["batch"]) == _key(result)}
    control = next((c for c in document["controls"] if (c["provider"], c["batch"]) == _key(result)), None)
    rows = []
    for m, info in zip(result["models"], document["models"], strict=True):
        lat = m["latency_ms"]
        if info["role"] == "baseline":
            vs = ["1", "baseline"]
        elif info["role"] == "control":
            vs = _ratio_text(control["ratio"], control["interval"], False) if control else ["", ""]
        else:
            r = ratios[m["index"]]
            vs = _ratio_text(r["speedup"], r["interval"], r["noisy"])
        rows.append(
            [
                info["name"],
                _ms(lat["p50"]),
                _ms(lat["p90"]),
                _ms(lat["p99"]),
                _ms(lat["mean"]),
                _ms(lat["std"]),
                f"{lat['throughput']:,.0f}",
                *vs,
            ]
        )
    return rows


TABLE = {"box": box.SIMPLE_HEAD, "padding": (0, 1), "collapse_padding": True, "pad_edge": False}
HEADERS = ["model", "p50 ms", "p90", "p99", "mean", "std", "items/s", "speedup", "95% CI"]


def _ms(value: float) -> str:
    """Milliseconds with about 3 significant digits, short enough for an 80-column table."""
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}" if value >= 1 else f"{value:.3g}"


def _key(result: dict[str, Any]) -> tuple[str, int]:
    return result["provider"], result["batch"]


def _ratio_text(value: float, interval: dict[str, float], noisy: bool) -> list[str]:
    return [f"{value:.3f}" + (" noisy" if noisy else ""), f"{interval['low']:.3f}-{interval['high']:.3f}"]


def _notes(document: dict[str, Any], result: dict[str, Any]) -> list[str]:
    rounds, contention = result["rounds"], result["contention"]
    load = contention["foreign_load_median"]
    waited = sum(m["runs"]["waited"] for m in result["models"])
    timed = sum(m["runs"]["timed"] for m in result["models"])
    paused = f", after waiting {rounds['waited_s']:.1f} s for the machine" if rounds["waited_s"] >= 0.1 else ""
    notes = [
        f"rounds: {rounds['kept']} kept of {rounds['timed']} ({rounds['dropped'] - rounds['slow']} dropped as "
        f"contended, {rounds['slow']} as the machine ran slow) in {rounds['timed_s']:.1f} s{paused}; "
        f"runs in which our threads waited for a CPU: {waited} of {timed}"
        + ("" if rounds["contended"] else " (left out)"),
        f"other processes' CPU during rounds: {'n/a' if load is None else f'{load:.2f} cores (median)'}",
    ]
    machine = result["machine"]
    pace = "no earlier run recorded" if machine["slowdown"] is None else f"{machine['slowdown']:.2f}x its best"
    slow = " (slow: ratios marked noisy)" if machine["slow"] else ""
    notes.append(f"machine speed: canary {_ms(machine['canary_ms'])} ms, {pace}{slow}")
    control = next((c for c in document["controls"] if (c["provider"], c["batch"]) == _key(result)), None)
    if control:
        notes.append(f"noise floor (control vs baseline): ±{control['noise_floor']:.1%}")
    return notes


def _model_rows(document: dict[str, Any]) -> list[list[str]]:
    rows = []
    for m in document["models"]:
        peak = m["memory"].get("peak_rss_growth_bytes")
        rows.append(
            [
                m["name"],
                m["role"],
                f"{m['size_bytes'] / 1e6:.2f}",
                f"{m['session_create_ms']:.1f}",
                "n/a" if peak is None else f"{peak / 2**20:.1f}",
                ", ".join(p.removesuffix("ExecutionProvider") for p in m["providers"]),
            ]
        )
    return rows


MODEL_HEADERS = ["model", "role", "file MB", "session ms", "peak RSS MiB", "providers"]


def _gate_rows(comparison: dict[str, Any]) -> list[list[str]]:
    return [
        [
            e["model"],
            e["saved_model"],
            f"{e['provider']} b{e['batch']}",
            _ms(e["saved_p50_ms"]),
            _ms(e["p50_ms"]),
            f"{e['slowdown']:+.1%}",
            f"{e['interval']['low']:+.1%} to {e['interval']['high']:+.1%}",
            "FAIL" if e["failed"] else "pass",
        ]
        for e in comparison["entries"]
    ]


GATE_HEADERS = ["model", "against", "where", "was ms", "p50 ms", "slower", "95% CI", "gate"]


def table(document: dict[str, Any]) -> Group:
    parts: list[Any] = []
    for result in document["results"]:
        t = Table(title=f"{result['provider']}, batch {result['batch']}", title_justify="left", **TABLE)
        for i, h in enumerate(HEADERS):
            t.add_column(h, justify="left" if i == 0 else "right", no_wrap=i > 0, overflow="fold")
        for row in _latency_rows(document, result):
            t.add_row(*row)
        parts += [t, *(Text("  " + n, style="dim") for n in _notes(document, result))]
    t = Table(title="sessions", title_justify="left", **TABLE)
    for i, h in enumerate(MODEL_HEADERS):
        t.add_column(h, justify="left" if i in (0, 1, 5) else "right", no_wrap=i not in (0, 5), overflow="fold")
    for row in _model_rows(document):
        t.add_row(*row)
    parts.append(t)
    comparison = document.get("comparison")
    if comparison:
        g = Table(title=f"gate: max slowdown {comparison['max_slowdown']:.1%} vs {comparison['against']}", **TABLE)
        for i, h in enumerate(GATE_HEADERS):
            g.add_column(h, justify="left" if i < 3 or i == 7 else "right", no_wrap=i > 1, overflow="fold")
        for row in _gate_rows(comparison):
            g.add_row(*[f"[red]{c}[/]" if c == "FAIL" else c for c in row])
        parts.append(g)
    parts += [Text("warning: " + w, style="yellow") for w in document["warnings"]]
    return Group(*parts)


def _md_table(headers: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(["---"] + ["---:"] * (len(headers) - 1)) + "|"]
    return lines + ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]


def markdown(document: dict[str, Any]) -> str:
    env = document["environment"]
    lines = [
        "## sparsecli benchmark",
        "",
        f"onnxruntime {env['onnxruntime']} on {env['cpu']} ({env['usable_cpus']} CPUs)",
    ]
    for result in document["results"]:
        lines += ["", f"### {result['provider']}, batch {result['batch']}", ""]
        lines += _md_table(HEADERS, _latency_rows(document, result))
        lines += [""] + [f"- {n}" for n in _notes(document, result)]
    lines += ["", "### Sessions", ""] + _md_table(MODEL_HEADERS, _model_rows(document))
    comparison = document.get("comparison")
    if comparison:
        lines += ["", f"### Gate: max slowdown {comparison['max_slowdown']:.1%} vs {comparison['against']}", ""]
        lines += _md_table(GATE_HEADERS, _gate_rows(comparison))
    if document["warnings"]:
        lines += [""] + [f"> **warning:** {w}" for w in document["warnings"]]
    return "\n".join(lines) + "\n"
