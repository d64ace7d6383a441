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

from sparsecli.errors import GateFailed, SparsecliError

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
def validate(recipe: RecipeArg, overrides: SetOpt = None, json_mode: JsonOpt = False) -> None:
    """Check a recipe without doing any work: schema, files, factory import, shapes, module patterns.

    Every problem is listed with its path in the file and its line. Exit 2 when invalid.

    [bold]Examples[/]

      sparsecli validate configs/quickstart.yaml
    """
    from sparsecli import pipeline
    from sparsecli import recipe as recipes

    ui = _ui(json_mode, False)
    loaded = recipes.load(recipe, overrides or [])
    pipeline.check(loaded)
    if json_mode:
        _emit_json({"valid": True, "recipe": loaded.model_dump(mode="json")})
    else:
        ui.print(f"[green]valid[/]: {recipe}")


def _builtin_recipes() -> dict[str, Path]:
    folder = Path(__file__).parent / "recipes"
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))}


@recipes_app.callback()
def recipes_list(ctx: typer.Context, json_mode: JsonOpt = False) -> None:
    """List the built-in recipes (`sparsecli recipes show NAME` prints one)."""
    if ctx.invoked_subcommand is not None:
        return
    ui = _ui(json_mode, False)
    found = _builtin_recipes()
    if json_mode:
        _emit_json({name: str(path) for name, path in found.items()})
        return
    for name, path in found.items():
        first = next((ln for ln in path.read_text().splitlines() if ln.startswith("#")), "#").lstrip("# ")
        ui.print(f"[bold]{name}[/]  {first}")


@recipes_app.command("show")
def recipes_show(name: Annotated[str, typer.Argument(help="Recipe name, as `sparsecli recipes` lists.")]) -> None:
    """Print a built-in recipe, e.g. `sparsecli recipes show quickstart > my.yaml`."""
    from sparsecli.errors import BadInput

    found = _builtin_recipes()
    if name not in found:
        raise BadInput(f"no built-in recipe {name!r}; known: {', '.join(found)}")
    sys.stdout.write(found[name].read_text())


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
