"""Sparse initializers: only tensors that shrink move, onnxruntime runs the file to the same outputs."""

from __future__ import annotations

import numpy as np
import onnx
import torch

from sparsecli import measure, storage
from sparsecli.export import export_onnx, run_batches


def _mlp(tmp_path, zero_fraction: float):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    with torch.no_grad():
        weight = model[1].weight
        weight[weight.abs() < weight.abs().flatten().quantile(zero_fraction)] = 0
    return export_onnx(model.eval(), torch.rand(1, 1, 8, 8), tmp_path / "m.onnx", 17, True)


def test_sparsify_moves_only_tensors_that_shrink(tmp_path):
    model = onnx.load(str(_mlp(tmp_path, 0.9)))
    moved = storage.sparsify(model)
    assert len(moved) == 1  # the 90%-zero weight; the dense classifier and the biases stay
    sparse = model.graph.sparse_initializer[0]
    assert sparse.indices.data_type == onnx.TensorProto.INT64 and list(sparse.dims) == [64, 64]
    assert len(onnx.numpy_helper.to_array(sparse.values)) == int(64 * 64 * 0.1 + 0.5)
    onnx.checker.check_model(model)


def test_store_sparse_shrinks_and_keeps_outputs_and_measurements(tmp_path):
    path = _mlp(tmp_path, 0.9)
    x = torch.rand(16, 1, 8, 8)
    expected, before = run_batches(path, x), path.stat().st_size
    sparsity, params = measure.onnx_sparsity(path), measure.onnx_params(path)
    record = storage.store_sparse(path, x, atol=1e-6)
    assert record["applied"] and record["max_abs_diff"] == 0.0
    assert record["size_bytes_after"] == path.stat().st_size < 0.5 * before
    assert len(onnx.load(str(path)).graph.sparse_initializer) == 1
    np.testing.assert_array_equal(run_batches(path, x), expected)
    # measurements read sparse initializers as the dense weights onnxruntime runs
    assert measure.onnx_sparsity(path) == sparsity and measure.onnx_params(path) == params


def test_store_sparse_leaves_a_dense_file_alone(tmp_path):
    path = _mlp(tmp_path, 0.5)  # fp32 at 50% zeros: values + int64 indices would be larger
    before = path.read_bytes()
    record = storage.store_sparse(path, torch.rand(4, 1, 8, 8), atol=1e-6)
    assert not record["applied"] and record["tensors"] == 0 and "no initializer" in record["reason"]
    assert path.read_bytes() == before
