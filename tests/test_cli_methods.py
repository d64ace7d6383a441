"""The method recipes in configs/ end to end through the CLI with small settings: exit 0, one JSON report."""

from __future__ import annotations

import json

import pytest

from tests.conftest import CONFIGS, FAST, overrides

# recipe -> extra overrides that fit its schedule into one fine-tuning epoch
RECIPES = {
    "l1": [],
    "l2": [],
    "l1_l2": [],
    "group-lasso": [],
    "regrow": ["passes.0.every=5"],
    "nm": ["passes.0.schedule.end_epoch=1"],
    "activation": [],
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return tmp_path_factory.mktemp("runs")  # one folder: the dense model is trained once and cached


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_method_recipe_runs(cli, runs, name):
    args = overrides(*FAST, f"output={runs / name}", *RECIPES[name])
    code, out, err = cli("prune", CONFIGS / f"{name}.yaml", *args, "--json")
    assert code == 0, err
    report = json.loads(out)
    described = report["passes"][0]
    assert described["kind"] == name.replace("-", "_")
    if name == "regrow":
        assert described["updates"] >= 1 and report["sparsity"]["overall"] >= 0.85
    if name == "nm":
        assert set(described["nm_compliance"].values()) == {1.0}
    if name.startswith("l1") or name == "l2":
        assert all("l2_after" in layer for layer in described["layers"].values())
