"""End-to-end: configs/structured-transformer.yaml and `factory:` encoders through the real CLI, small settings."""

from __future__ import annotations

import json
import shutil

import numpy as np
import torch

from sparsecli import checkpoint
from sparsecli.export import run_batches
from sparsecli.models.zoo import ZOO
from sparsecli.passes.attention import SlimAttention
from tests.conftest import CONFIGS, FAST, ROOT, overrides

SMALL = [*FAST, "model.kwargs={dim: 16, depth: 1, heads: 4, ffn: 32}"]


def test_structured_transformer_recipe(cli, tmp_path):
    run = tmp_path / "run"
    args = overrides(*SMALL, f"output={run}")
    code, out, err = cli("prune", CONFIGS / "structured-transformer.yaml", *args, "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["params"]["compressed"] < report["params"]["dense"]
    assert report["macs"]["compressed"] < 0.6 * report["macs"]["dense"]
    assert max(report["parity_max_abs_diff"].values()) <= 1e-4
    heads, neurons = report["passes"]
    assert heads["heads"]["layers.0.self_attn"] == {"before": 4, "after": 2}
    assert neurons["neurons"]["layers.0.linear1"] == {"before": 32, "after": 16}
    assert set(report["latency_ms"]["cpu"]) == {"1", "32"}

    # the finished checkpoint rebuilds the pruned architecture in a fresh zoo model, which re-exports the same
    fresh = ZOO["transformer"]((1, 8, 8), 10, dim=16, depth=1, heads=4, ffn=32)
    checkpoint.load(run / "checkpoint.pt", fresh)
    assert isinstance(fresh.layers[0].self_attn, SlimAttention) and fresh.layers[0].self_attn.num_heads == 2
    x = torch.rand(8, 1, 8, 8)
    with torch.no_grad():
        expected = fresh.eval()(x).numpy()
    assert np.abs(run_batches(run / "model.onnx", x) - expected).max() <= 1e-4


def _factory_recipe(tmp_path, name: str, builder: str, passes: str) -> str:
    shutil.copy(ROOT / "tests" / "fixtures" / "attention_models.py", tmp_path / f"{name}_models.py")
    recipe = tmp_path / f"{name}.yaml"
    recipe.write_text(
        f"name: {name}\n"
        f"model: {{factory: '{name}_models:{builder}', input_shape: [1, 1, 8, 8]}}\n"
        f"passes: {passes}\n"
        f"output: {tmp_path / 'run'}\n"
    )
    return str(recipe)


def test_factory_encoder_gets_smaller(cli, tmp_path):
    passes = "[{kind: heads, ratio: 0.5}, {kind: neurons, ratio: 0.5, exclude: ['mlp.*']}]"
    recipe = _factory_recipe(tmp_path, "attn_e2e", "encoder", passes)
    code, out, err = cli("prune", recipe, *overrides(*FAST), "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["params"]["compressed"] < 0.7 * report["params"]["dense"]
    assert report["size_bytes"]["compressed"] < report["size_bytes"]["dense"]
    assert max(report["parity_max_abs_diff"].values()) <= 1e-4
    assert report["passes"][1]["neurons"] == {
        "encoder.layers.0.linear1": {"before": 64, "after": 32},
        "encoder.layers.1.linear1": {"before": 64, "after": 32},
    }


def test_factory_parts_that_cannot_be_pruned_are_named(cli, tmp_path):
    recipe = _factory_recipe(tmp_path, "odd_e2e", "unprunable", "[{kind: heads, ratio: 0.5, strict: true}]")
    code, _, err = cli("validate", recipe)
    assert code == 2
    assert "odd: uses bias_k/bias_v or add_zero_attn" in err
    recipe = _factory_recipe(tmp_path, "odd2_e2e", "unprunable", "[{kind: neurons, ratio: 0.5, strict: true}]")
    code, _, err = cli("validate", recipe)
    assert code == 2 and "block.linear1: activation '_swish' is user code" in err
