"""Every number a report shows about a model: sparsity, parameters, MACs, file sizes.

Sparsity is counted on the exported ONNX weights, so it describes the artifact that ships.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

WEIGHT_OPS = {"Conv": 1, "ConvTranspose": 1, "Gemm": 1, "MatMul": 1}


def _layer_name(node: onnx.NodeProto, weight_name: str) -> str:
    """The PyTorch module fqn the TorchScript exporter put in the node name ('/a/a.0/Conv' -> 'a.0')."""
    parts = node.name.split("/")
    return parts[-2] if node.name.startswith("/") and len(parts) >= 3 and parts[-2] else weight_name


def onnx_weights(model: onnx.ModelProto) -> Iterator[tuple[str, np.ndarray]]:
    """(layer name, weight array) for every Conv/Gemm/MatMul whose weight is an initializer."""
    inits = {init.name: init for init in model.graph.initializer}
    for node in model.graph.node:
        slot = WEIGHT_OPS.get(node.op_type)
        if slot is None or len(node.input) <= slot:
            continue
        for name in (node.input[slot], node.input[0]) if node.op_type == "MatMul" else (node.input[slot],):
            if name in inits:
                yield _layer_name(node, name), numpy_helper.to_array(inits[name])
                break


def onnx_sparsity(path: Path) -> dict:
    """Fraction of exact zeros in the weights of weighted ops, overall and per layer."""
    model = onnx.load(str(path))
    per_layer, zeros, total = {}, 0, 0
    for name, weight in onnx_weights(model):
        z = int(weight.size - np.count_nonzero(weight))
        per_layer[name] = {"shape": list(weight.shape), "params": int(weight.size), "sparsity": z / weight.size}
        zeros += z
        total += weight.size
    return {"overall": zeros / total if total else 0.0, "per_layer": per_layer}


def onnx_params(path: Path) -> int:
    """Elements in all initializers: the parameters the file carries."""
    return int(sum(np.prod(init.dims, dtype=np.int64) for init in onnx.load(str(path)).graph.initializer))


def file_sizes(path: Path) -> dict[str, int]:
    """Raw bytes and gzip bytes (level 9): what storage and download cost."""
    data = Path(path).read_bytes()
    return {"raw": len(data), "gzip": len(gzip.compress(data, compresslevel=9))}


@torch.no_grad()
def count_macs(model: nn.Module, example: torch.Tensor) -> int:
    """Multiply-accumulates of one forward pass at `example`'s shape (PyTorch's flop counter / 2).

    Zeros inside a weight still count: dense kernels multiply them. Only removed channels lower this.
    """
    from torch.utils.flop_counter import FlopCounterMode

    model.eval()
    counter = FlopCounterMode(display=False)
    with counter:
        model(example)
    return int(counter.get_total_flops() // 2)


def torch_sparsity(model: nn.Module) -> dict[str, float]:
    """Exact-zero fraction of each weighted module's weight (for progress messages and tests)."""
    return {
        fqn: float((m.weight == 0).float().mean())
        for fqn, m in model.named_modules()
        if isinstance(getattr(m, "weight", None), torch.Tensor) and m.weight.dim() >= 2
    }
