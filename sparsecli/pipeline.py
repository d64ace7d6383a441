"""The prune job as a short sequence of stages, each a plain function.

load data -> dense model (checkpoint, or trained once and cached) -> export dense.onnx ->
passes + fine-tuning -> export model.onnx -> measure and benchmark -> report.
"""

from __future__ import annotations

import copy
import itertools
import time
from pathlib import Path
from typing import Any

import onnxruntime
import torch
from torch import nn

from sparsecli import baseline, bench, checkpoint, measure, quantize, report, resume, storage
from sparsecli.atomic import atomic_path, write_text
from sparsecli.console import UI
from sparsecli.data import sources
from sparsecli.errors import BadInput, RunFailed, SparsecliError
from sparsecli.export import INPUT_NAME, check_parity, export_onnx
from sparsecli.passes import PassContext, build
from sparsecli.recipe import Recipe
from sparsecli.tasks import TASKS, Objective
from sparsecli.train import TrainConfig, evaluate, make_optimizer, set_dropout


def objective(recipe: Recipe, dense: nn.Module) -> Objective:
    """Fine-tuning loss: the task's own, plus distillation from the dense model when the recipe asks."""
    task, distill = TASKS[recipe.model.task], recipe.finetune.distill
    if distill is None:
        return Objective(task)
    teacher = copy.deepcopy(dense).eval().requires_grad_(False)
    layers = None
    if distill.hidden_states:
        from sparsecli.models.hf import hidden_layers

        layers = hidden_layers
    return Objective(task, teacher, distill.weight, distill.temperature, layers)


def finetune_config(recipe: Recipe) -> TrainConfig:
    ft = recipe.finetune
    return TrainConfig(
        epochs=ft.epochs,
        optimizer=ft.optimizer.name,
        lr=ft.optimizer.lr,
        weight_decay=ft.optimizer.weight_decay,
        momentum=ft.optimizer.momentum,
        lr_schedule=ft.lr_schedule,
    )


def compress(
    recipe: Recipe,
    dense: nn.Module,
    data: sources.DataBundle,
    ui: UI,
    run_dir: Path,
    resume_state: dict[str, Any] | None = None,
) -> tuple[nn.Module, list]:
    """Apply the passes with fine-tuning in between; a checkpoint after every epoch makes it resumable."""
    # from scratch: the same initial weights the dense model started from, so only sparsity differs
    model = baseline.fresh_model(recipe, data) if recipe.finetune.from_scratch else copy.deepcopy(dense)
    if recipe.finetune.dropout is not None:
        set_dropout(model, recipe.finetune.dropout)
    loader = data.loader("train", recipe.data.batch_size, recipe.seed)
    calibration = list(itertools.islice(loader, 4))
    ctx = PassContext(baseline.example_input(recipe, data), len(loader), float(recipe.finetune.epochs), calibration)
    passes = [build(spec) for spec in recipe.passes]
    for p in passes:
        p.prepare(model, ctx)
    for p in passes:
        for note in p.describe().get("notes", []):
            ui.note(f"{p.kind}: {note}")
    if resume_state:  # first: a structured pass may have shrunk layers since `prepare`
        checkpoint.restore(model, resume_state)
    config = finetune_config(recipe)
    optimizer = make_optimizer(model, config)
    key = recipe.fingerprint(*resume.TRAINING_SECTIONS)

    def save(epoch: int, optimizer: torch.optim.Optimizer) -> None:
        resume.save(run_dir / "checkpoint.pt", key, model, optimizer, passes, epoch)

    start = resume.restore(resume_state, model, optimizer, passes) if resume_state else 0
    if start == 0:
        save(0, optimizer)
    ui.stage(f"passes: {', '.join(p.kind for p in passes) or 'none'}; fine-tuning epochs {start + 1}..{config.epochs}")
    fit_args = {"on_epoch": save, "start_epoch": start, "optimizer": optimizer, "objective": objective(recipe, dense)}
    baseline.train_model(model, recipe, data, config, passes, ui, "finetune", **fit_args)
    for p in passes:
        model = p.finish(model)
    return model.eval(), passes


def export_checked(recipe: Recipe, model: nn.Module, data, path: Path) -> float:
    """Export, then compare with PyTorch on validation inputs (and, for token models, at the benchmark's length)."""
    example = baseline.example_input(recipe, data)
    names = data.input_names or (INPUT_NAME,)
    output = TASKS[recipe.model.task].output_name
    export_onnx(model, example, path, recipe.export.opset, recipe.export.dynamic_batch, names, output)
    diff = check_parity(path, model, data.head("val", 256), recipe.export.atol)
    if data.input_names:
        diff = max(diff, check_parity(path, model, example, recipe.export.atol))
    return diff


def benchmark(recipe: Recipe, paths: list[Path]) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
    """latency_ms[provider][batch][file name] from one interleaved onnxruntime run over all `paths`."""
    b = recipe.benchmark
    out: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    timing = b.model_dump(include={"threads", "warmup", "iterations", "seq_len", "max_wait_s"})
    for provider in b.providers:
        for batch in b.batch_sizes:
            stats = bench.time_models(paths, batch, provider=provider, **timing)
            out.setdefault(provider, {})[str(batch)] = {p.name: s for p, s in zip(paths, stats, strict=True)}
    return out


def measurements(
    recipe: Recipe,
    run_dir: Path,
    data,
    models: tuple[nn.Module, nn.Module],
    parity: dict[str, float],
    passes: list[dict[str, Any]],
) -> report.Facts:
    paths = [run_dir / "dense.onnx", run_dir / "model.onnx"]
    example = baseline.example_input(recipe, data)
    example = tuple(t[:1] for t in example) if isinstance(example, tuple) else example[:1]
    files = quantize.stage_files(run_dir, recipe.export.quantize != "none")  # the size chain, timed together
    timed = benchmark(recipe, [path for _, path in files])
    task = TASKS[recipe.model.task]
    val = data.loader("val", baseline.eval_batch(recipe, data))
    accuracy = measure.onnx_quality([path for _, path in files], val, task)
    sizes = {path.name: measure.file_sizes(path) for _, path in files}
    return report.Facts(
        accuracy=(accuracy["dense.onnx"], accuracy["model.onnx"]),
        metric=task.metric,
        drop_points=task.drop_points(accuracy["dense.onnx"], accuracy["model.onnx"]),
        sparsity=measure.onnx_sparsity(paths[1]),
        params=(measure.onnx_params(paths[0]), measure.onnx_params(paths[1])),
        macs=(measure.count_macs(models[0], example), measure.count_macs(models[1], example)),
        sizes=(sizes["dense.onnx"], sizes["model.onnx"]),
        latency_ms=report.pick_latency(timed, {"dense": "dense.onnx", "compressed": "model.onnx"}),
        chain=[report.chain_entry(stage, path.name, accuracy, sizes, timed) for stage, path in files],
        parity=parity,
        passes=passes,
        environment={
            "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__,
            "threads": recipe.benchmark.threads,
        },
    )


def check(recipe: Recipe) -> None:
    """What validation can only check with the model in hand: shapes fit, patterns match modules.

    Passes are prepared on a throwaway copy of an untrained model; nothing is trained or written.
    """
    data = baseline.load_data(recipe)
    model = baseline.fresh_model(recipe, data)
    example = baseline.example_input(recipe, data)
    baseline.check_fits(model, example, baseline.class_count(recipe, data))
    labels = torch.zeros(len(example[0] if isinstance(example, tuple) else example), dtype=torch.long)
    ctx = PassContext(example, 1, float(max(1, recipe.finetune.epochs)), [(example, labels)])
    for i, spec in enumerate(recipe.passes):
        try:
            build(spec).prepare(copy.deepcopy(model), ctx)
        except BadInput as exc:
            raise BadInput(f"passes[{i}].{exc}") from None


def prepare_folder(recipe: Recipe, overwrite: bool, resuming: bool) -> Path:
    """Never lose a user's finished or interrupted run by accident."""
    run_dir = recipe.run_dir
    if (run_dir / "report.json").exists() and not overwrite:
        raise BadInput(f"{run_dir} already holds a finished run; pass --overwrite or set output: elsewhere")
    if (run_dir / "checkpoint.pt").exists() and not (overwrite or resuming):
        raise BadInput(f"{run_dir} holds an interrupted run; pass --resume to continue it or --overwrite to restart")
    if overwrite:
        (run_dir / "report.json").unlink(missing_ok=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text(run_dir / "recipe.yaml", recipe.resolved_yaml())
    return run_dir


def run(recipe: Recipe, ui: UI, *, overwrite: bool = False, resuming: bool = False) -> dict[str, Any]:
    """The whole prune job; returns the report (also written to the run folder)."""
    check(recipe)
    run_dir = prepare_folder(recipe, overwrite, resuming)
    resume_state = None
    if resuming:
        resume_state = resume.load(run_dir / "checkpoint.pt", recipe.fingerprint(*resume.TRAINING_SECTIONS))
        ui.stage(f"resuming {run_dir} after fine-tuning epoch {resume_state['epoch']}")
    stage = "setup"
    wall: dict[str, float] = {}
    try:
        t0 = time.perf_counter()
        stage = "data"
        data = baseline.load_data(recipe)
        stage = "dense model"
        dense = baseline.dense_model(recipe, data, ui)
        with atomic_path(run_dir / "dense.pt") as tmp:
            torch.save(dense.state_dict(), tmp)
        task, val_batch = TASKS[recipe.model.task], baseline.eval_batch(recipe, data)
        ui.note(f"dense validation {task.metric} {evaluate(dense, data.loader('val', val_batch), task):.4f}")
        stage = "export dense.onnx"
        parity = {"dense": export_checked(recipe, dense, data, run_dir / "dense.onnx")}
        wall["dense"] = time.perf_counter() - t0
        stage = "passes and fine-tuning"
        t0 = time.perf_counter()
        model, passes = compress(recipe, dense, data, ui, run_dir, resume_state)
        wall["compress"] = time.perf_counter() - t0
        metric = evaluate(model, data.loader("val", val_batch), task, dense)
        ui.note(f"compressed validation {task.metric} {metric:.4f}")
        stage = "export model.onnx"
        parity["compressed"] = export_checked(recipe, model, data, run_dir / "model.onnx")
        checkpoint.save(run_dir / "checkpoint.pt", model, format=resume.FORMAT, stage="finished")
        stage = "quantize and store"
        int8 = quantize.apply(recipe, run_dir, data, data.loader("val", baseline.eval_batch(recipe, data)))
        files = [path for _, path in quantize.stage_files(run_dir, int8 is not None)]
        inputs, export = data.head("val", 256), recipe.export
        stored = storage.apply(files, inputs, export.atol) if export.sparse_initializers else None
        stage = "measure and benchmark"
        ui.stage("measuring and benchmarking with onnxruntime")
        t0 = time.perf_counter()
        facts = measurements(recipe, run_dir, data, (dense, model), parity, [p.describe() for p in passes])
        facts.quantization, facts.storage = int8, stored
        result = report.build(recipe, facts)
        wall["measure"] = time.perf_counter() - t0
        result["wall_s"] = wall
        report.write(run_dir, result)
        return result
    except KeyboardInterrupt:
        raise RunFailed(
            f"interrupted during {stage}; {run_dir / 'checkpoint.pt'} holds the last finished epoch: "
            "continue with `sparsecli prune RECIPE --resume`"
        ) from None
    except SparsecliError as exc:
        exc.args = (f"{exc} (during {stage}; partial results in {run_dir})",)
        raise
    except Exception as exc:
        raise RunFailed(f"{stage} failed: {type(exc).__name__}: {exc}; partial results in {run_dir}") from exc
