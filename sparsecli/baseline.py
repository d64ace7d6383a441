"""The job's inputs: the data, an example batch at the export shape, a fresh model, and the dense baseline
(the recipe's checkpoint, or trained once and cached by model, data and seed).

`prune`, `analyze`, `analyze --sensitivity` and the bench scripts start from the same model and data.
"""

from __future__ import annotations

import torch
from torch import nn

from sparsecli.atomic import atomic_path
from sparsecli.console import UI, advance
from sparsecli.data import sources
from sparsecli.errors import BadInput
from sparsecli.models.source import build_model, load_checkpoint
from sparsecli.passes.base import Inputs, forward
from sparsecli.recipe import Recipe
from sparsecli.tasks import TASKS
from sparsecli.train import TrainConfig, fit


def load_data(recipe: Recipe) -> sources.DataBundle:
    """The recipe's data, split by its seed; text is tokenized with the hf model's own tokenizer."""
    d = recipe.data
    if d.dataset == "text":
        from sparsecli.data import text
        from sparsecli.models import hf

        tokenizer = hf.load_tokenizer(hf.resolve_folder(recipe.model.hf, recipe.base_dir))
        names = hf.model_inputs(tokenizer)
        limits = {"max_length": d.max_length, "val_fraction": d.val_fraction, "seed": recipe.seed, "limit": d.limit}
        labelled = TASKS[recipe.model.task].needs_labels
        return text.load(tokenizer, names, path=d.path, needs_labels=labelled, **limits)
    return sources.load(
        d.dataset,
        path=d.path,
        val_fraction=d.val_fraction,
        seed=recipe.seed,
        shape=d.shape,
        classes=d.classes,
        samples=d.samples,
    )


def example_input(recipe: Recipe, data: sources.DataBundle) -> Inputs:
    """One real batch at the export shape: batch 1 when dynamic, else the benchmark's batch.

    Token inputs come at the benchmark's sequence length, so MACs describe the timed shape.
    """
    batch = 1 if recipe.export.dynamic_batch else recipe.benchmark.batch_sizes[0]
    if data.input_names:
        from sparsecli.data import text

        return text.example(data, recipe.benchmark.seq_len, batch)
    shape = recipe.model.input_shape
    if shape is not None and list(shape[1:]) != list(data.input_shape):
        raise BadInput(f"model.input_shape {shape} does not match the data's sample shape {list(data.input_shape)}")
    return data.val.tensors[0][:1].repeat(batch, *[1] * len(data.input_shape))


def fresh_model(recipe: Recipe, data: sources.DataBundle) -> nn.Module:
    """The recipe's model before any training, seeded so every stage that builds one gets the same weights."""
    m = recipe.model
    torch.manual_seed(recipe.seed)
    if m.hf is not None:
        from sparsecli.models import hf

        return hf.load(hf.resolve_folder(m.hf, recipe.base_dir), m.task, data.num_classes, data.input_names)
    return build_model(
        zoo=m.zoo,
        factory=m.factory,
        kwargs=m.kwargs,
        input_shape=data.input_shape,
        num_classes=data.num_classes,
        base_dir=recipe.base_dir,
    )


def check_fits(model: nn.Module, example: Inputs, num_classes: int | None) -> None:
    """One forward pass, so a shape mismatch is a clear message rather than a trace deep in training.

    `num_classes` is None for tasks whose output is not class scores (embeddings, token logits).
    """
    try:
        with torch.no_grad():
            out = forward(model.eval(), example)
    except Exception as exc:
        shapes = [list(t.shape) for t in example] if isinstance(example, tuple) else list(example.shape)
        raise BadInput(f"model does not accept the data's inputs of shape {shapes}: {exc}") from None
    if num_classes is not None and (out.dim() != 2 or out.shape[1] < num_classes):
        raise BadInput(f"model output shape {list(out.shape)} does not fit {num_classes} classes")


def class_count(recipe: Recipe, data: sources.DataBundle) -> int | None:
    """The classes the model's output must cover; None when the task's output is not class scores."""
    return data.num_classes if TASKS[recipe.model.task].needs_labels else None


def dense_model(recipe: Recipe, data: sources.DataBundle, ui: UI) -> nn.Module:
    """The baseline: the checkpoint if given, else trained once and cached by (model, data, seed)."""
    model = fresh_model(recipe, data)
    check_fits(model, example_input(recipe, data), class_count(recipe, data))
    if recipe.model.checkpoint is not None:
        load_checkpoint(model, recipe.model.checkpoint)
    if recipe.model.checkpoint is not None or recipe.model.hf is not None:  # a pretrained folder is the baseline
        return model
    key = recipe.fingerprint("model", "data", "seed")
    cached = recipe.run_dir.parent / ".cache" / f"dense-{key}.pt"
    if cached.is_file():
        ui.stage(f"dense model: reusing {cached}")
        load_checkpoint(model, cached)
        return model
    pre = recipe.model.pretrain
    ui.stage(f"dense model: training {pre.epochs} epochs (no checkpoint given)")
    train_model(model, recipe, data, TrainConfig(epochs=pre.epochs, lr=pre.lr), [], ui, "pretrain")
    with atomic_path(cached) as tmp:
        torch.save(model.state_dict(), tmp)
    return model


def train_model(model, recipe: Recipe, data, config: TrainConfig, passes, ui: UI, label: str, **fit_args) -> None:
    """`train.fit` over the recipe's training data, with a progress bar labelled `label`."""
    loader = data.loader("train", recipe.data.batch_size, recipe.seed)
    start = fit_args.get("start_epoch", 0)
    with ui.task(label, (config.epochs - start) * len(loader)) as bar:
        fit(
            model,
            loader,
            config,
            passes,
            on_step=lambda step, loss: advance(bar, f"loss {loss:.3f}"),
            seed=recipe.seed,
            **fit_args,
        )


def eval_batch(recipe: Recipe, data: sources.DataBundle) -> int:
    """Validation batch size: large for small inputs; the recipe's for token models, whose attention grows fast."""
    return recipe.data.batch_size if data.input_names else 512
