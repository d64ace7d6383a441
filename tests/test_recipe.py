"""Recipe loading: the issue's recipe is accepted as written; each class of mistake gets its path and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from sparsecli.errors import BadInput
from sparsecli.recipe import load, parse

ISSUE_RECIPE = """\
name: quickstart
seed: 0
model: {zoo: convnet}
data: {dataset: digits, batch_size: 64, val_fraction: 0.2}
passes:
  - kind: magnitude
    target: 0.8
    scope: global            # or per_layer
    exclude: ["*classifier*"]  # glob on module names; `include` too
    schedule: {start_epoch: 0, end_epoch: 4, curve: cubic}   # cubic = gradual magnitude pruning
finetune: {epochs: 6, optimizer: {name: adamw, lr: 0.001}, lr_schedule: cosine}
export: {opset: 17, dynamic_batch: true, atol: 0.0001}
benchmark: {providers: [cpu], batch_sizes: [1, 32], warmup: 10, iterations: 50}
gates: {max_accuracy_drop: 1.0, min_sparsity: 0.8}   # drop in percentage points
"""


def problems_of(text: str, base: Path = Path(".")) -> list[str]:
    with pytest.raises(BadInput) as info:
        parse(text, "r.yaml", base)
    return info.value.problems or [str(info.value)]


def test_issue_recipe_accepted_as_written():
    recipe = parse(ISSUE_RECIPE, "r.yaml", Path("."))
    assert recipe.passes[0].target == 0.8
    assert recipe.passes[0].schedule.curve == "cubic"
    assert recipe.gates.max_accuracy_drop == 1.0
    assert recipe.run_dir == Path("runs/quickstart")


def test_defaults_fill_a_short_recipe():
    recipe = parse("name: x\nmodel: {zoo: mlp}\n", "r.yaml", Path("."))
    assert recipe.data.dataset == "digits" and recipe.finetune.epochs > 0 and recipe.passes == []
    assert "benchmark:" in recipe.resolved_yaml()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: x\nmodel: {zoo: mlp}\ncolour: red\n", "colour: unknown key (line 3)"),
        ("name: x\nmodel: {zoo: mlp}\nseed: abc\n", "seed: Input should be a valid integer"),
        (
            "name: x\nmodel: {zoo: mlp}\npasses:\n  - {kind: magnitude, target: 1.5}\n",
            "passes[0].target: Input should be less than 1, got 1.5 (line 4)",
        ),
        ("name: x\nmodel: {zoo: nope}\n", "model.zoo: unknown zoo model 'nope'"),
        ("name: x\nmodel: {zoo: mlp, checkpoint: missing.pt}\n", "model.checkpoint: file not found"),
        ("name: x\nmodel: {factory: 'no_such_module:build'}\n", "model.factory: cannot import module 'no_such_module'"),
        ("name: x\nmodel: {factory: 'nocolon'}\n", "must look like 'package.module:function'"),
        ("name: x\nmodel: {zoo: mlp}\ndata: {dataset: npz}\n", "dataset npz needs a path"),
        (
            "name: x\nmodel: {zoo: mlp}\npasses:\n  - {kind: magnitude, target: 0.5, schedule: {end_epoch: 9}}\n"
            "finetune: {epochs: 2}\n",
            "after the last fine-tuning epoch",
        ),
        ("model: {zoo: mlp}\n", "name: required"),
        ("name: x\nmodel: {zoo: mlp}\npasses:\n  - {kind: nonsense}\n", "passes[0]"),
    ],
)
def test_each_mistake_is_named_with_its_path(text, expected):
    assert any(expected in p for p in problems_of(text)), problems_of(text)


def test_three_mistakes_are_all_reported():
    text = "name: x\nmodel: {zoo: convnett}\ndata: {batch_size: 0}\npasses:\n  - {kind: magnitude, target: 2}\n"
    found = problems_of(text)
    assert len(found) == 3
    assert [p.split(":")[0] for p in found] == ["model.zoo", "data.batch_size", "passes[0].target"]


def test_unreadable_yaml_names_the_line():
    with pytest.raises(BadInput, match="line 3"):
        parse("name: x\nmodel: {zoo: mlp\n", "r.yaml", Path("."))


def test_not_a_mapping():
    with pytest.raises(BadInput, match="a recipe is a YAML mapping"):
        parse("- 1\n- 2\n", "r.yaml", Path("."))


def test_relative_paths_resolve_against_the_recipe_folder(tmp_path):
    (tmp_path / "w.pt").write_bytes(b"")
    (tmp_path / "r.yaml").write_text("name: x\nmodel: {zoo: mlp, checkpoint: w.pt}\n")
    assert load(tmp_path / "r.yaml").model.checkpoint == tmp_path / "w.pt"


def test_missing_recipe_file():
    with pytest.raises(BadInput, match="recipe not found"):
        load("does/not/exist.yaml")
