"""Typer commands, thin: parse, call one function, render. `main()` maps errors to exit codes.

torch and onnxruntime are imported inside commands so `sparsecli --help` stays fast.
"""

from __future__ import annotations

import json
import signal
import sys
import traceback
from pathlib import Path
from typing import Annotated, Any

import typer

from sparsecli.errors import BadInput, GateFailed, SparsecliError

app = typer.Typer(
    help="Make PyTorch models smaller and faster by sparsification, measured with onnxruntime.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
recipes_app = typer.Typer(help="Built-in recipes, printable as a starting point.", invoke_without_command=True)
app.add_typer(recipes_app, name="recipes")

_state: dict[str, bool] = {"debug": False, "json": False, "emitted": False}

RecipeArg = Annotated[Path, typer.Argument(help="Recipe YAML file.", show_default=False)]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a recipe field, e.g. --set passes.0.target=0.9 (repeatable)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout; all else on stderr.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or tables; errors only.")]


def _ui(json_mode: bool, quiet: bool):
    from sparsecli.console import UI

    _state["json"] = json_mode
    return UI(json_mode=json_mode, quiet=quiet)


def _emit_json(document: Any) -> None:
    """The one JSON document of this invocation (an error after a report does not add a second)."""
    if not _state["emitted"]:
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
        _state["emitted"] = True


@app.callback()
def root(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False) -> None:
    _state["debug"] = debug


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


@app.command()
def prune(
    recipe: RecipeArg,
    overrides: SetOpt = None,
    json_mode: JsonOpt = False,
    quiet: QuietOpt = False,
    overwrite: Annotated[bool, typer.Option(help="Replace a finished or interrupted run in the same folder.")] = False,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted run from its checkpoint.pt.")] = False,
) -> None:
    """Run a recipe: load, prune, fine-tune, export ONNX, benchmark with onnxruntime, report.

    Exit codes: 0 success, 1 a gate failed, 2 bad recipe or arguments, 3 the run failed.

    [bold]Examples[/]

      sparsecli prune configs/quickstart.yaml

      sparsecli prune configs/quickstart.yaml --set passes.0.target=0.9 --json > report.json
    """
    from sparsecli import pipeline, report
    from sparsecli import recipe as recipes

    ui = _ui(json_mode, quiet)
    signal.signal(signal.SIGTERM, _interrupt)  # a CI timeout or `kill` stops as cleanly as Ctrl-C
    result = pipeline.run(recipes.load(recipe, overrides or []), ui, overwrite=overwrite, resuming=resume)
    if json_mode:
        _emit_json(result)
    else:
        ui.print(report.table(result))
    failed = report.failed_gates(result)
    if failed:
        raise GateFailed(
            "gate failed: " + "; ".join(f"{g['name']} = {g['value']:.4g} vs {g['threshold']:g}" for g in failed)
        )


@app.command()
def validate(recipe: RecipeArg, overrides: SetOpt = None, json_mode: JsonOpt = False, quiet: QuietOpt = False) -> None:
    """Check a recipe without doing any work: schema, files, factory import, shapes, module patterns.

    Every problem is listed with its path in the file and its line. Exit 2 when invalid.

    [bold]Examples[/]

      sparsecli validate configs/quickstart.yaml
    """
    from sparsecli import pipeline
    from sparsecli import recipe as recipes

    ui = _ui(json_mode, quiet)
    loaded = recipes.load(recipe, overrides or [])
    pipeline.check(loaded)
    if json_mode:
        _emit_json({"valid": True, "recipe": loaded.model_dump(mode="json")})
    else:
        ui.print(f"[green]valid[/]: {recipe}")


@app.command()
def sweep(
    recipe: RecipeArg,
    overrides: SetOpt = None,
    json_mode: JsonOpt = False,
    quiet: QuietOpt = False,
    output: Annotated[Path | None, typer.Option(help="Sweep folder; default runs/<name>-sweep.")] = None,
) -> None:
    """Run a grid of prune jobs: each --set with a comma list is an axis, a plain --set a fixed override.

    Each point runs in its own folder under the sweep folder; one failed point does not stop the rest,
    and a rerun skips the points whose report.json exists. Writes sweep.json and sweep.png (accuracy vs
    latency and vs size, Pareto front marked; needs the `plot` extra). Exit 3 when a point failed,
    1 when a point's gate failed.

    [bold]Examples[/]

      sparsecli sweep configs/quickstart.yaml --set passes.0.target=0.5,0.7,0.9

      sparsecli sweep configs/quickstart.yaml --set passes.0.target=0.8,0.9 --set finetune.epochs=2,6 --json
    """
    from sparsecli import sweep as sweeps

    ui = _ui(json_mode, quiet)
    signal.signal(signal.SIGTERM, _interrupt)
    doc = sweeps.run(recipe, overrides or [], ui, output)
    if json_mode:
        _emit_json(doc)
    else:
        ui.print(sweeps.table(doc))
        ui.note(f"wrote {doc['folder']}/sweep.json; " + (f"plot {doc['plot']}" if doc["plot"] else doc["plot_note"]))
    error = sweeps.outcome(doc)
    if error is not None:
        raise error


def _sensitivity(recipe: Path, overrides: list[str], json_mode: bool, quiet: bool, target, out) -> None:
    """`analyze --sensitivity`: scan the layers, write per-layer targets, render."""
    from sparsecli import sensitivity as sensitivities

    ui = _ui(json_mode, quiet)
    doc = sensitivities.analyze(recipe, overrides, ui, target, out)
    if json_mode:
        _emit_json(doc)
    else:
        ui.print(sensitivities.table(doc))
        ui.note(f"wrote {doc['recipe_out']}; " + (f"plot {doc['plot']}" if doc["plot"] else doc["plot_note"]))


@app.command()
def analyze(
    model: Annotated[Path, typer.Argument(help="An .onnx file, a checkpoint (.pt) or a recipe (.yaml).")],
    recipe: Annotated[
        Path | None, typer.Option(help="For a checkpoint: the recipe naming its model; default recipe.yaml beside it.")
    ] = None,
    eps: Annotated[float, typer.Option(help="Near zero means |value| < eps (weights and activations).")] = 1e-3,
    nm: Annotated[str, typer.Option(help="N:M pattern whose compliance is counted per layer.")] = "2:4",
    data: Annotated[
        str | None, typer.Option(help="'digits' or an .npz with array x: measure activation and input sparsity.")
    ] = None,
    samples: Annotated[int, typer.Option(min=1, help="Rows of --data to run.")] = 512,
    json_mode: JsonOpt = False,
    quiet: QuietOpt = False,
    sensitivity: Annotated[
        bool,
        typer.Option(
            "--sensitivity",
            help="MODEL is a recipe: prune each layer alone (one-shot, no fine-tuning), plot the accuracy drop "
            "and write a recipe with per-layer targets that prune sensitive layers less.",
        ),
    ] = False,
    target: Annotated[
        float | None, typer.Option(help="--sensitivity: overall sparsity; default passes[0].target.")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="--sensitivity: recipe to write; default runs/<name>-sensitivity/recipe.yaml.")
    ] = None,
    overrides: SetOpt = None,
) -> None:
    """Per layer: shape, params, exact-zero and near-zero %, L1/L2 norms, N:M compliance, all-zero rows, MACs.

    Always measured on ONNX: a checkpoint or recipe is exported first (a recipe with a finished run
    uses its model.onnx). With --data, activation sparsity per layer is measured with onnxruntime.

    [bold]Examples[/]

      sparsecli analyze runs/quickstart/model.onnx --data digits

      sparsecli analyze runs/quickstart/checkpoint.pt --nm 2:4 --json

      sparsecli analyze --sensitivity configs/quickstart.yaml --target 0.9 --out sensitive.yaml
    """
    if sensitivity:
        return _sensitivity(model, overrides or [], json_mode, quiet, target, out)
    from sparsecli import analyze as analysis

    ui = _ui(json_mode, quiet)
    result = analysis.analyze(model, recipe=recipe, eps=eps, nm=nm, data=data, samples=samples)
    if json_mode:
        _emit_json(result)
    else:
        ui.print(analysis.table(result))


@app.command()
def benchmark(
    models: Annotated[list[Path], typer.Argument(help="ONNX files; the first is the baseline.", show_default=False)],
    batch: Annotated[str | None, typer.Option(help="Batch sizes for a dynamic first axis, e.g. 1,8,32.")] = None,
    shape: Annotated[
        list[str] | None, typer.Option("--shape", help="An input's shape, e.g. input_ids=1x128 (repeatable).")
    ] = None,
    seq_len: Annotated[int | None, typer.Option(min=1, help="Value for other dynamic axes (sequence).")] = None,
    inputs: Annotated[Path | None, typer.Option(help="Real inputs: an .npz with one array per input name.")] = None,
    provider: Annotated[str, typer.Option(help="cpu, cuda or tensorrt.")] = "cpu",
    threads: Annotated[int | None, typer.Option(min=1, help="Intra-op threads (default: onnxruntime's).")] = None,
    inter_threads: Annotated[int | None, typer.Option(min=1, help="Inter-op threads (parallel mode).")] = None,
    graph_opt: Annotated[str, typer.Option(help="disable, basic, extended or all.")] = "all",
    execution_mode: Annotated[str, typer.Option(help="sequential or parallel.")] = "sequential",
    warmup: Annotated[int, typer.Option(min=0, help="Untimed runs per model and batch.")] = 10,
    iterations: Annotated[int | None, typer.Option(min=1, help="Timed runs per model and batch.")] = None,
    min_time: Annotated[
        float | None, typer.Option(min=0.0, help="Seconds of timed rounds per model and batch [default: 2].")
    ] = None,
    max_wait: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            help="Seconds per batch to wait for a machine slower than its recorded speed (0: never) [default: 60].",
        ),
    ] = None,
    include_copies: Annotated[bool, typer.Option(help="GPU: time host<->device copies (no I/O binding).")] = False,
    control: Annotated[bool, typer.Option(help="Time a second session of the baseline (noise floor).")] = True,
    json_mode: JsonOpt = False,
    markdown: Annotated[bool, typer.Option("--markdown", help="Print Markdown (for a pull request).")] = False,
    save: Annotated[Path | None, typer.Option(help="Write the JSON document here, for a later --compare.")] = None,
    compare: Annotated[Path | None, typer.Option(help="A saved run to gate against (same provider, batch).")] = None,
    max_slowdown: Annotated[
        str | None, typer.Option(help="Gate: exit 1 when slower beyond the interval, e.g. 5% [default: 5%].")
    ] = None,
    quiet: QuietOpt = False,
) -> None:
    """Time ONNX models side by side with onnxruntime; every model gets its speedup over the first.

    Exit codes: 0 success, 1 a --compare/--max-slowdown gate failed, 2 bad arguments or files.

    [bold]Examples[/]

      sparsecli benchmark runs/quickstart/dense.onnx runs/quickstart/model.onnx --batch 1,32

      sparsecli benchmark bert.onnx --shape input_ids=1x128 --json > bench.json

      sparsecli benchmark model.onnx --compare baseline.json --max-slowdown 5%
    """
    from sparsecli import bench_gate, bench_report

    ui = _ui(json_mode, quiet)
    req = bench_report.request(
        models,
        batch=batch,
        shapes=shape,
        seq_len=seq_len,
        inputs=inputs,
        save=save,
        compare=compare,
        max_slowdown=max_slowdown,
        provider=provider,
        threads=threads,
        inter_threads=inter_threads,
        graph_opt=graph_opt,
        execution_mode=execution_mode,
        warmup=warmup,
        iterations=iterations,
        min_time=min_time,
        max_wait_s=max_wait,
        include_copies=include_copies,
        control=control,
    )
    if json_mode and markdown:
        raise BadInput("--json and --markdown both want stdout; pick one")
    document = bench_report.execute(req, ui)
    if json_mode:
        _emit_json(document)
    elif markdown:
        sys.stdout.write(bench_report.markdown(document))
    else:
        ui.print(bench_report.table(document))
    failed = bench_gate.failures(document.get("comparison"))
    if failed:
        raise GateFailed("benchmark gate failed: " + "; ".join(failed))


def _builtin_recipes() -> dict[str, Path]:
    folder = Path(__file__).parent / "recipes"
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))}


@recipes_app.callback()
def recipes_list(ctx: typer.Context, json_mode: JsonOpt = False, quiet: QuietOpt = False) -> None:
    """List the built-in recipes (`sparsecli recipes show NAME` prints one)."""
    if ctx.invoked_subcommand is not None:
        return
    ui = _ui(json_mode, quiet)
    found = _builtin_recipes()
    if json_mode:
        _emit_json({name: str(path) for name, path in found.items()})
        return
    for name, path in found.items():
        first = next((ln for ln in path.read_text().splitlines() if ln.startswith("#")), "#").lstrip("# ")
        ui.print(f"[bold]{name}[/]  {first}")


@recipes_app.command("show")
def recipes_show(
    name: Annotated[str, typer.Argument(help="Recipe name, as `sparsecli recipes` lists.")],
    json_mode: JsonOpt = False,
) -> None:
    """Print a built-in recipe, e.g. `sparsecli recipes show quickstart > my.yaml` (--json: as JSON)."""
    import yaml

    from sparsecli.errors import BadInput

    _state["json"] = json_mode
    found = _builtin_recipes()
    if name not in found:
        raise BadInput(f"no built-in recipe {name!r}; known: {', '.join(found)}")
    text = found[name].read_text()
    if json_mode:
        _emit_json({"name": name, "path": str(found[name]), "recipe": yaml.safe_load(text)})
    else:
        sys.stdout.write(text)


def main() -> None:
    """Entry point: run the app, turn sparsecli errors into a message on stderr and an exit code."""
    try:
        app()
    except SparsecliError as exc:
        if _state["debug"]:
            traceback.print_exc()
        if _state["json"]:
            _emit_json({"error": str(exc), "problems": exc.problems, "exit_code": exc.exit_code})
        sys.stderr.write(f"error: {exc.render()}\n")
        sys.exit(exc.exit_code)
    except Exception as exc:  # a bug, not the user's fault: say so briefly, trace only on request
        if _state["debug"]:
            traceback.print_exc()
        sys.stderr.write(f"internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)\n")
        sys.exit(3)
