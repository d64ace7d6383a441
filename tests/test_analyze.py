"""`analyze`: its figures equal counts made here, independently, on the same weights and data."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from sparsecli.analyze import analyze
from sparsecli.export import export_onnx
from tests.conftest import CONFIGS


@pytest.fixture
def onnx_model(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(8 * 8 * 8, 4)
    )
    with torch.no_grad():
        model[0].weight[:3] = 0  # three empty output channels
        model[0].weight[3:, :, 0, :] = 1e-4  # near zero, not zero
        w = model[3].weight
        w[:, 0::4] = 0
        w[:, 1::4] = 0  # 2:4 along the input in every group
        w[1] = 0  # one empty row
        model[0].bias.fill_(-0.1)
    path = export_onnx(model, torch.rand(1, 1, 8, 8), tmp_path / "m.onnx", 17, True)
    return model, path


def test_weight_figures_equal_independent_counts(onnx_model):
    model, path = onnx_model
    result = analyze(path, eps=1e-3, nm="2:4")
    conv, linear = result["layers"]["0"], result["layers"]["3"]
    w = model[0].weight.detach().numpy()
    assert conv["shape"] == [8, 1, 3, 3] and conv["params"] == w.size
    assert conv["sparsity"] == pytest.approx((w == 0).sum() / w.size)
    assert conv["near_zero"] == pytest.approx((np.abs(w) < 1e-3).sum() / w.size)
    assert conv["l1"] == pytest.approx(np.abs(w).sum(), rel=1e-6)
    assert conv["l2"] == pytest.approx(np.sqrt((w.astype(np.float64) ** 2).sum()), rel=1e-6)
    assert conv["zero_channels"] == 3 and conv["nm_compliance"] is None  # one input channel
    assert conv["macs"] == 8 * 8 * 8 * 9
    v = model[3].weight.detach().numpy()
    assert linear["zero_channels"] == 1 and linear["nm_compliance"] == 1.0
    assert linear["sparsity"] == pytest.approx((v == 0).sum() / v.size)
    assert linear["macs"] == v.size
    assert result["total"]["params"] == w.size + v.size
    assert analyze(path, nm="1:4")["layers"]["3"]["nm_compliance"] == pytest.approx(1 / 4)  # only the empty row


def test_activation_and_input_sparsity_equal_pytorch_counts(onnx_model, tmp_path):
    model, path = onnx_model
    x = np.random.default_rng(0).random((20, 1, 8, 8), dtype=np.float32)
    x[:, :, :4] = 0
    np.savez(tmp_path / "d.npz", x=x)
    result = analyze(path, data=str(tmp_path / "d.npz"), eps=0.05)
    with torch.no_grad():
        relu = model[1](model[0](torch.from_numpy(x))).numpy()
    assert result["input"]["sparsity"] == pytest.approx(0.5) and result["input"]["samples"] == 20
    got = result["activations"]["1"]
    assert got["op"] == "Relu"
    assert got["sparsity"] == pytest.approx((relu == 0).mean(), abs=1e-6)
    assert got["near_zero"] == pytest.approx((np.abs(relu) < 0.05).mean(), abs=1e-6)


def test_cli_analyze_checkpoint_with_recipe_json(cli, tmp_path):
    torch.manual_seed(0)
    from sparsecli.models.zoo import convnet

    model = convnet((1, 8, 8), 10)
    with torch.no_grad():
        model.classifier.weight[:5] = 0
    torch.save(model.state_dict(), tmp_path / "c.pt")
    code, out, err = cli("analyze", tmp_path / "c.pt", "--recipe", CONFIGS / "quickstart.yaml", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["layers"]["classifier"]["zero_channels"] == 5
    assert result["total"]["macs"] == sum(v["macs"] for v in result["layers"].values()) > 0


def test_cli_analyze_bad_inputs_exit_2(cli, tmp_path, onnx_model):
    _, path = onnx_model
    (tmp_path / "c.pt").write_bytes(b"")
    assert cli("analyze", tmp_path / "c.pt")[0] == 2  # no recipe beside it
    code, _, err = cli("analyze", path, "--nm", "4:2")
    assert code == 2 and "--nm" in err
    code, _, err = cli("analyze", path, "--data", tmp_path / "missing.npz")
    assert code == 2 and "--data" in err
