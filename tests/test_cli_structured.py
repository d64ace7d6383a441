"""End-to-end: configs/structured-resnet.yaml and unseen `factory:` models through the real CLI, small settings."""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from sparsecli import checkpoint, resume
from sparsecli.export import export_onnx, run_batches
from sparsecli.models.zoo import resnet
from tests.conftest import CONFIGS, FAST, ROOT, overrides

RECIPE = CONFIGS / "structured-resnet.yaml"
SMALL = [*FAST, "model.kwargs={width: 8, depth: [1, 1, 1]}", "passes.0.round_to=4"]
TINY_DATA = "data={dataset: synthetic, shape: [1, 8, 8], classes: 10, samples: 256}"  # where accuracy is not tested


def _prune(cli, output, *extra: str, flags: tuple[str, ...] = ()):
    code, out, err = cli("prune", RECIPE, *overrides(*SMALL, f"output={output}", *extra), "--json", *flags)
    return code, (json.loads(out) if out.strip() else None), err


def _conv_out_channels(path) -> list[int]:
    weights = [numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer]
    return sorted(w.shape[0] for w in weights if w.ndim == 4)


def test_structured_resnet_shrinks_reloads_and_reexports(cli, tmp_path):
    code, report, err = _prune(cli, tmp_path / "run")
    assert code == 0, err
    run = tmp_path / "run"
    assert report["macs"]["compressed"] <= 0.35 * report["macs"]["dense"]
    assert report["params"]["compressed"] < 0.35 * report["params"]["dense"]
    assert set(report["speedup_efficiency"]["cpu"]) == {"1", "32"}
    assert _conv_out_channels(run / "model.onnx") == [c // 2 for c in _conv_out_channels(run / "dense.onnx")]
    assert report["passes"][0]["channels"]["features.1.conv1"] == {"before": 8, "after": 4}
    assert "classifier: feeds the model output" in err

    # checkpoint.pt rebuilds the smaller model from a fresh zoo resnet: same outputs as model.onnx, and re-exports
    model = resnet((1, 8, 8), 10, width=8)
    checkpoint.load(run / "checkpoint.pt", model)
    x = torch.rand(16, 1, 8, 8)
    expected = run_batches(run / "model.onnx", x)
    np.testing.assert_allclose(model.eval()(x).detach().numpy(), expected, atol=1e-4)
    again = export_onnx(model, x[:1], tmp_path / "again.onnx", opset=17, dynamic_batch=True)
    np.testing.assert_allclose(run_batches(again, x), expected, atol=1e-5)


def test_a_pruned_checkpoint_is_a_starting_point_for_further_pruning(cli, tmp_path):
    assert _prune(cli, tmp_path / "first", TINY_DATA)[0] == 0
    first = tmp_path / "first" / "checkpoint.pt"
    code, report, err = _prune(cli, tmp_path / "second", TINY_DATA, f"model.checkpoint={first}", "passes.0.round_to=1")
    assert code == 0, err
    assert report["passes"][0]["channels"]["features.1.conv1"] == {"before": 4, "after": 2}


def test_resume_of_a_run_pruned_in_steps_ends_like_a_straight_run(cli, tmp_path, monkeypatch):
    settings = ("passes.0.steps=3", "finetune.epochs=3", TINY_DATA)
    code, straight, err = _prune(cli, tmp_path / "straight", *settings)
    assert code == 0, err
    save = resume.save

    def save_then_stop(path, key, model, optimizer, passes, epoch):
        save(path, key, model, optimizer, passes, epoch)
        if epoch == 1:  # layers have shrunk twice since prepare by now: the checkpoint must carry that
            raise KeyboardInterrupt

    monkeypatch.setattr(resume, "save", save_then_stop)
    assert _prune(cli, tmp_path / "resumed", *settings)[0] == 3
    monkeypatch.undo()
    code, resumed, err = _prune(cli, tmp_path / "resumed", *settings, flags=("--resume",))
    assert code == 0, err
    assert resumed["params"] == straight["params"] and resumed["macs"] == straight["macs"]
    assert abs(resumed["accuracy"]["compressed"] - straight["accuracy"]["compressed"]) * 100 <= 1.0


@pytest.mark.parametrize("builder", ["projection_resnet", "mobilenet_v2", "densenet", "fixed_view"])
def test_unseen_factory_models(cli, tmp_path, builder):
    shutil.copy(ROOT / "tests" / "fixtures" / "conv_models.py", tmp_path / "conv_models_e2e.py")
    (tmp_path / "own.yaml").write_text(
        "name: own\n"
        f"model: {{factory: 'conv_models_e2e:{builder}', kwargs: {{width: 8}}}}\n"
        "data: {dataset: synthetic, shape: [1, 8, 8], classes: 10, samples: 256}\n"
        "passes: [{kind: channels, ratio: 0.5}]\n"
        f"output: {tmp_path / 'run'}\n"
    )
    try:
        code, out, err = cli("prune", tmp_path / "own.yaml", *overrides(*FAST), "--json")
    finally:
        sys.modules.pop("conv_models_e2e", None)
    assert code == 0, err
    report = json.loads(out)
    assert report["params"]["compressed"] < report["params"]["dense"]
    assert report["parity_max_abs_diff"]["compressed"] <= 1e-4
    if builder == "fixed_view":  # prunes what it can and names what it cannot
        assert "conv2: removing its channels breaks the forward pass" in err
        assert report["passes"][0]["channels"]["conv2"]["after"] == 8
