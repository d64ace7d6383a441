from __future__ import annotations

import pytest
import torch

from sparsecli.errors import RunFailed
from sparsecli.export import check_parity, export_onnx, run_batches
from sparsecli.models.zoo import ZOO
from sparsecli.passes import masking


@pytest.mark.parametrize("name", ["mlp", "convnet", "resnet"])
def test_zoo_models_export_with_parity(name, tmp_path):
    torch.manual_seed(0)
    model = ZOO[name]((1, 8, 8), 10).eval()
    x = torch.rand(20, 1, 8, 8)
    path = export_onnx(model, x[:1], tmp_path / "m.onnx", 17, dynamic_batch=True)
    assert check_parity(path, model, x, atol=1e-4) < 1e-4


def test_fixed_batch_export_runs_padded_batches(tmp_path):
    model = ZOO["mlp"]((1, 8, 8), 10).eval()
    x = torch.rand(7, 1, 8, 8)
    path = export_onnx(model, x[:4], tmp_path / "m.onnx", 17, dynamic_batch=False)
    assert run_batches(path, x).shape == (7, 10)


def test_parity_failure_is_a_run_failure(tmp_path):
    model = ZOO["mlp"]((1, 8, 8), 10).eval()
    x = torch.rand(4, 1, 8, 8)
    path = export_onnx(model, x[:1], tmp_path / "m.onnx", 17, True)
    with torch.no_grad():
        model.classifier.bias += 1.0
    with pytest.raises(RunFailed, match="differs from PyTorch"):
        check_parity(path, model, x, atol=1e-4)


def test_parametrized_model_is_refused(tmp_path):
    model = ZOO["mlp"]((1, 8, 8), 10)
    masking.attach(model.classifier)
    with pytest.raises(RunFailed, match="parametrizations"):
        export_onnx(model, torch.rand(1, 1, 8, 8), tmp_path / "m.onnx", 17, True)
    assert not (tmp_path / "m.onnx").exists()
