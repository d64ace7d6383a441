"""Measurements checked against counts made independently here."""

from __future__ import annotations

import gzip
import sys

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from sparsecli import measure
from sparsecli.export import export_onnx


def test_onnx_sparsity_counts_initializer_zeros(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    with torch.no_grad():
        model[1].weight[:, :32] = 0  # exactly half
    path = export_onnx(model, torch.rand(1, 1, 8, 8), tmp_path / "m.onnx", 17, True)
    stats = measure.onnx_sparsity(path)
    assert stats["per_layer"]["1"]["sparsity"] == 0.5
    assert stats["per_layer"]["3"]["sparsity"] == 0.0
    assert stats["overall"] == (16 * 32) / (64 * 16 + 16 * 4)
    inits = onnx.load(str(path)).graph.initializer
    assert measure.onnx_params(path) == sum(numpy_helper.to_array(i).size for i in inits)


def test_file_sizes(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(bytes(1000))
    sizes = measure.file_sizes(path)
    assert {k: sizes[k] for k in ("raw", "gzip")} == {"raw": 1000, "gzip": len(gzip.compress(bytes(1000), 9))}
    zstandard = pytest.importorskip("zstandard")
    assert sizes["zstd"] == len(zstandard.ZstdCompressor(level=19).compress(bytes(1000))) < 100


def test_file_sizes_without_zstandard_omit_zstd(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "zstandard", None)  # import now raises ImportError
    path = tmp_path / "f.bin"
    path.write_bytes(bytes(10))
    assert set(measure.file_sizes(path)) == {"raw", "gzip"}


def test_macs_of_linear_and_conv():
    linear = torch.nn.Linear(64, 10, bias=False)
    assert measure.count_macs(linear, torch.rand(1, 64)) == 640
    conv = torch.nn.Conv2d(2, 4, 3, padding=1, bias=False)
    assert measure.count_macs(conv, torch.rand(1, 2, 8, 8)) == 4 * 2 * 9 * 64


def test_torch_sparsity():
    layer = torch.nn.Linear(4, 4)
    with torch.no_grad():
        layer.weight[0] = 0
    assert measure.torch_sparsity(torch.nn.Sequential(layer)) == {"0": np.float32(0.25)}
