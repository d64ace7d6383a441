"""Layer sensitivity: the allocation of per-layer targets, and `analyze --sensitivity` end to end."""

from __future__ import annotations

import json

import jsonschema
import pytest

from sparsecli import recipe as recipes
from sparsecli import schemas, sensitivity
from sparsecli.errors import BadInput
from tests.conftest import CONFIGS, FAST, overrides


def _curve(at_half: float, at_nine_tenths: float) -> dict[str, float]:
    """Accuracy drop (points) at sparsity 0.5 and 0.9."""
    return {"0.5": at_half, "0.9": at_nine_tenths}


def _weighted(targets: dict[str, float], sizes: dict[str, int]) -> float:
    return sum(targets[f] * sizes[f] for f in sizes) / sum(sizes.values())


def test_sensitive_layers_keep_more_weights_and_the_total_is_exact():
    drops = {"fragile": _curve(20.0, 60.0), "tough": _curve(0.0, 1.0)}
    sizes = {"fragile": 1000, "tough": 1000}
    targets = sensitivity.allocate(drops, sizes, 0.6)
    assert targets["fragile"] < 0.6 < targets["tough"] <= 0.9
    assert _weighted(targets, sizes) == pytest.approx(0.6, abs=1e-4)


def test_equal_curves_prune_the_larger_layer_first():
    drops = {"small": _curve(0.0, 0.0), "large": _curve(0.0, 0.0)}
    targets = sensitivity.allocate(drops, {"small": 100, "large": 10_000}, 0.5)
    assert targets["small"] < targets["large"]


def test_noise_never_rewards_more_pruning():
    """A lucky accuracy gain at a high level must not pull that layer past a steadily hurt one."""
    drops = {"noisy": _curve(5.0, -3.0), "steady": _curve(1.0, 4.0)}
    targets = sensitivity.allocate(drops, {"noisy": 500, "steady": 500}, 0.5)
    assert targets["noisy"] < targets["steady"]


def test_target_above_the_levels_measured_is_bad_input():
    with pytest.raises(BadInput, match="above the highest level"):
        sensitivity.allocate({"a": _curve(0.0, 0.0)}, {"a": 10}, 0.95)


def test_analyze_sensitivity_writes_a_recipe_with_differing_targets(cli, tmp_path):
    out = tmp_path / "sensitive.yaml"
    args = overrides(*FAST, f"output={tmp_path / 'run'}", "passes.0.schedule.end_epoch=1")
    code, stdout, err = cli(
        "analyze", "--sensitivity", CONFIGS / "quickstart.yaml", "--target", "0.8", "--out", out, *args, "--json"
    )
    assert code == 0, err
    doc = json.loads(stdout)
    jsonschema.validate(doc, schemas.load("sensitivity"))
    layers = doc["layers"]
    assert set(layers) == {"features.0.0", "features.1.0", "features.3.0"}  # the classifier is excluded
    targets = {f: layer["target"] for f, layer in layers.items()}
    assert len(set(targets.values())) == 3
    assert _weighted(targets, {f: layer["params"] for f, layer in layers.items()}) == pytest.approx(0.8, abs=1e-3)
    # the one-shot scan is real: pruning the small first conv to 98% costs more than pruning the last one to 50%
    assert layers["features.0.0"]["drops"]["0.98"] > layers["features.3.0"]["drops"]["0.5"]
    written = recipes.load(out)
    spec = written.passes[0]
    assert (spec.scope, spec.target, dict(spec.per_layer)) == ("per_layer", 0.8, targets)
    assert written.name == "quickstart-sensitivity" and written.finetune.epochs == 1  # --set carried over
    png = tmp_path / "quickstart-sensitivity" / "sensitivity.png"
    assert doc["plot"] == str(png) and png.read_bytes()[:4] == b"\x89PNG"


def test_sensitivity_needs_a_magnitude_pass(cli):
    code, _, err = cli("analyze", "--sensitivity", CONFIGS / "structured-resnet.yaml")
    assert code == 2 and "kind 'channels'" in err
