"""Every number a report shows about a model: sparsity, parameters, MACs, file sizes.

Sparsity is counted on the exported ONNX weights, so it describes the artifact that ships.
"""

from __future__ import annotations

import gzip
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from sparsecli.errors import BadInput

# Weight slot per op; the Integer ops are what onnxruntime's dynamic INT8 quantization leaves.
WEIGHT_OPS = {"Conv": 1, "ConvTranspose": 1, "Gemm": 1, "MatMul": 1, "ConvInteger": 1, "MatMulInteger": 1}


def _layer_name(node: onnx.NodeProto, weight_name: str) -> str:
    """The PyTorch module fqn the TorchScript exporter put in the node name ('/a/a.0/Conv' -> 'a.0')."""
    parts = node.name.split("/")
    return parts[-2] if node.name.startswith("/") and len(parts) >= 3 and parts[-2] else weight_name


def _sparse_to_dense(sparse: onnx.SparseTensorProto) -> np.ndarray:
    values = numpy_helper.to_array(sparse.values)
    indices = numpy_helper.to_array(sparse.indices)
    dense = np.zeros(int(np.prod(sparse.dims, dtype=np.int64)), dtype=values.dtype)
    flat = np.ravel_multi_index(indices.T, sparse.dims) if indices.ndim == 2 else indices
    dense[flat] = values
    return dense.reshape(tuple(sparse.dims))


def read_onnx(path: Path) -> onnx.ModelProto:
    """Load an ONNX file; a missing, truncated or foreign file is the user's input problem, named."""
    try:
        return onnx.load(str(path))
    except Exception as exc:  # protobuf and onnx raise several types for unreadable files
        raise BadInput(f"{path}: not a readable ONNX model: {exc}") from None


def initializers(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Every initializer as an array, sparse ones made dense: the weights onnxruntime will run."""
    arrays = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    arrays.update({s.values.name: _sparse_to_dense(s) for s in model.graph.sparse_initializer})
    return arrays


@dataclass(frozen=True)
class OnnxLayer:
    """A weighted op of an ONNX graph: its module fqn, op, the weight that ships and how its axes run."""

    name: str
    op: str
    weight: np.ndarray
    in_axis: int  # the weight's axis along the layer's inputs: N:M groups run along it
    out_axis: int  # one entry per output channel (row)
    output: str  # the op's output tensor in the graph


def _weight_axes(node: onnx.NodeProto, slot: int) -> tuple[int, int]:
    """(in_axis, out_axis) of the weight at input `slot`: Conv is (out, in, k...), Gemm/MatMul differ."""
    if node.op_type == "ConvTranspose":
        return 0, 1
    if node.op_type == "Gemm":
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        return (1, 0) if trans_b else (0, 1)
    if node.op_type in ("MatMul", "MatMulInteger"):
        return (0, 1) if slot == 1 else (1, 0)
    return 1, 0


def onnx_layers(model: onnx.ModelProto) -> Iterator[OnnxLayer]:
    """Every weighted op whose weight is an initializer.

    In a QDQ (static INT8) graph the weight reaches the op through DequantizeLinear: the INT8
    initializer behind it is the weight that ships, so that is the one counted.
    """
    inits = initializers(model)
    dequantized = {n.output[0]: n.input[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    for node in model.graph.node:
        slot = WEIGHT_OPS.get(node.op_type)
        if slot is None or len(node.input) <= slot:
            continue
        slots = (slot, 0) if node.op_type == "MatMul" else (slot,)
        for position in slots:
            name = node.input[position]
            source = name if name in inits else dequantized.get(name, name)
            if source in inits:
                axes = _weight_axes(node, position)
                yield OnnxLayer(_layer_name(node, source), node.op_type, inits[source], *axes, node.output[0])
                break


def onnx_weights(model: onnx.ModelProto) -> Iterator[tuple[str, np.ndarray]]:
    """(layer name, weight array) for every weighted op whose weight is an initializer."""
    for layer in onnx_layers(model):
        yield layer.name, layer.weight


def onnx_sparsity(path: Path) -> dict:
    """Fraction of exact zeros in the weights of weighted ops, overall and per layer (with `weight_stats`)."""
    model = read_onnx(path)
    per_layer, zeros, total = {}, 0, 0
    for layer in onnx_layers(model):
        per_layer[layer.name] = weight_stats(layer.weight, in_axis=layer.in_axis, out_axis=layer.out_axis)
        zeros += layer.weight.size - np.count_nonzero(layer.weight)
        total += layer.weight.size
    return {"overall": zeros / total if total else 0.0, "per_layer": per_layer}


def nm_compliance(weight: np.ndarray, n: int, m: int, axis: int = 1) -> float | None:
    """Fraction of groups of `m` consecutive weights along the input `axis` holding at most `n` non-zeros.

    Groups run along the input channels at each output channel and kernel position, as sparse tensor
    cores read them; None when that axis is not a multiple of `m` (the layer cannot be N:M).
    """
    moved = np.moveaxis(np.asarray(weight), axis, -1)
    if moved.ndim == 0 or moved.shape[-1] % m:
        return None
    return float((np.count_nonzero(moved.reshape(-1, m), axis=1) <= n).mean())


def weight_stats(
    weight: np.ndarray | torch.Tensor,
    *,
    eps: float = 1e-3,
    nm: tuple[int, int] = (2, 4),
    in_axis: int = 1,
    out_axis: int = 0,
) -> dict[str, Any]:
    """One weight's figures, the same in prune reports, pass summaries and `analyze`: exact zeros,
    near zeros (|w| < eps), L1 and L2 norms, N:M compliance, all-zero output channels (rows)."""
    w = np.asarray(weight.detach().cpu() if isinstance(weight, torch.Tensor) else weight)
    size = max(1, w.size)
    magnitude = np.abs(w.astype(np.float64))
    rows = np.moveaxis(w, out_axis, 0).reshape(w.shape[out_axis], -1) if w.ndim else w.reshape(1, 1)
    return {
        "shape": list(w.shape),
        "params": int(w.size),
        "sparsity": float(w.size - np.count_nonzero(w)) / size,
        "near_zero": float((magnitude < eps).sum()) / size,
        "l1": float(magnitude.sum()),
        "l2": float(np.sqrt(np.square(magnitude).sum())),
        "nm_compliance": nm_compliance(w, *nm, axis=in_axis),
        "zero_channels": int((~rows.any(axis=1)).sum()),
        "channels": int(rows.shape[0]),
    }


def output_shapes(model: onnx.ModelProto) -> dict[str, list[int | None]]:
    """Each tensor's shape from ONNX shape inference; None for a dimension it cannot tell (a dynamic batch)."""
    inferred = onnx.shape_inference.infer_shapes(model)
    infos = (*inferred.graph.value_info, *inferred.graph.output)
    return {
        v.name: [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim] for v in infos
    }


def layer_macs(layer: OnnxLayer, shapes: dict[str, list[int | None]]) -> int | None:
    """Multiply-accumulates of one sample: output elements x weights per output channel (zeros included)."""
    dims = shapes.get(layer.output)
    if layer.op == "ConvTranspose" or not dims or None in dims[1:]:
        return None
    return math.prod(dims[1:]) * (layer.weight.size // layer.weight.shape[layer.out_axis])


def small_counts(values: np.ndarray, eps: float) -> tuple[int, int, int]:
    """(exact zeros, |v| < eps, total) of an array: activation sparsity summed over batches."""
    return int(values.size - np.count_nonzero(values)), int((np.abs(values) < eps).sum()), int(values.size)


# Ops whose outputs are the activations people mean; weighted ops are watched too.
ACTIVATION_OPS = {"Relu", "LeakyRelu", "Gelu", "Clip", "Sigmoid", "Tanh", "HardSwish", "Elu", "Selu", "Softplus"}


def onnx_activation_sparsity(path: Path, inputs: np.ndarray, eps: float) -> dict[str, dict[str, Any]]:
    """Per weighted or activation op: the fraction of exact zeros and of |a| < eps in its output over `inputs`.

    Measured with onnxruntime on the file itself: a copy of the graph lists each watched op's output
    as a graph output, so the numbers describe the kernels that ship, not a PyTorch re-run.
    """
    import tempfile

    from sparsecli.export import each_batch, session

    model = read_onnx(path)
    typed = {v.name: v for v in onnx.shape_inference.infer_shapes(model).graph.value_info}
    existing = {o.name for o in model.graph.output}
    watched: dict[str, tuple[str, str]] = {}  # output tensor -> (layer name, op)
    for node in model.graph.node:
        if node.op_type in WEIGHT_OPS or node.op_type in ACTIVATION_OPS:
            name = _layer_name(node, node.output[0])
            taken = {n for n, _ in watched.values()}
            watched[node.output[0]] = (name if name not in taken else f"{name} ({node.output[0]})", node.op_type)
            if node.output[0] not in existing:
                fallback = onnx.helper.make_tensor_value_info(node.output[0], onnx.TensorProto.FLOAT, None)
                model.graph.output.append(typed.get(node.output[0], fallback))
    counts = {tensor: np.zeros(3, dtype=np.int64) for tensor in watched}
    with tempfile.TemporaryDirectory() as folder:
        onnx.save(model, str(Path(folder) / "watched.onnx"))
        sess = session(Path(folder) / "watched.onnx")
        names = [o.name for o in sess.get_outputs()]
        for outputs in each_batch(sess, inputs.astype(np.float32)):
            for tensor, values in zip(names, outputs, strict=True):
                if tensor in counts:
                    counts[tensor] += small_counts(values, eps)
    return {
        watched[t][0]: {"op": watched[t][1], "sparsity": c[0] / max(1, c[2]), "near_zero": c[1] / max(1, c[2])}
        for t, c in counts.items()
    }


def onnx_params(path: Path) -> int:
    """Elements in all initializers: the parameters the file carries."""
    return int(sum(a.size for a in initializers(read_onnx(path)).values()))


def file_sizes(path: Path) -> dict[str, int]:
    """Raw bytes, gzip bytes (level 9) and, with the zstandard package, zstd bytes (level 19).

    What storage and download cost; zstd is left out rather than guessed when the package is absent.
    """
    data = Path(path).read_bytes()
    sizes = {"raw": len(data), "gzip": len(gzip.compress(data, compresslevel=9))}
    try:
        import zstandard
    except ImportError:
        return sizes
    sizes["zstd"] = len(zstandard.ZstdCompressor(level=19).compress(data))
    return sizes


def onnx_quality(paths: list[Path], batches: Iterable[tuple[Any, torch.Tensor]], task: Any) -> dict[str, float]:
    """The task's metric (a `sparsecli.tasks.Task`) of each ONNX file on `batches`, by file name.

    The first file (dense.onnx) is the reference that embeddings are compared with.
    """
    from sparsecli.export import each_batch, session

    sessions = {path.name: session(path) for path in paths}
    totals = dict.fromkeys(sessions, (0.0, 0))
    for x, y in batches:
        outputs = {name: np.concatenate([o[0] for o in each_batch(s, x)]) for name, s in sessions.items()}
        reference = outputs[paths[0].name]
        for name, out in outputs.items():
            total, count = task.metric_parts(out, x, y.numpy(), reference)
            totals[name] = (totals[name][0] + total, totals[name][1] + count)
    return {name: task.finalize(*total) for name, total in totals.items()}


@torch.no_grad()
def count_macs(model: nn.Module, example: torch.Tensor | tuple[torch.Tensor, ...]) -> int:
    """Multiply-accumulates of one forward pass at `example`'s shape (PyTorch's flop counter / 2).

    Zeros inside a weight still count: dense kernels multiply them. Only removed channels lower this.
    """
    from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

    from sparsecli.models.transformer import plain_attention
    from sparsecli.passes.base import forward

    # The counter knows the GPU attention kernels only; the CPU one does the same two matmuls.
    cpu_attention = {
        torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: lambda q, k, v, *_, **__: sdpa_flop_count(q, k, v)
    }
    model.eval()
    counter = FlopCounterMode(display=False, custom_mapping=cpu_attention)
    with counter, plain_attention():  # the fused encoder-layer fast path would count as zero
        forward(model, example)
    return int(counter.get_total_flops() // 2)


def torch_sparsity(model: nn.Module) -> dict[str, float]:
    """Exact-zero fraction of each weighted module's weight (for progress messages and tests)."""
    return {
        fqn: float((m.weight == 0).float().mean())
        for fqn, m in model.named_modules()
        if isinstance(getattr(m, "weight", None), torch.Tensor) and m.weight.dim() >= 2
    }
