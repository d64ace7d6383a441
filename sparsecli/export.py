"""ONNX export with the TorchScript exporter, the ONNX checker, and a parity check on real inputs.

The TorchScript exporter (`dynamo=False`) exports these models in under a second and needs no
onnxscript; the dynamo exporter is several times slower for the same graph.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from sparsecli.atomic import atomic_path
from sparsecli.errors import RunFailed
from sparsecli.models.transformer import plain_attention
from sparsecli.passes.base import Inputs, forward
from sparsecli.passes.masking import has_parametrizations

INPUT_NAME = "input"
OUTPUT_NAME = "output"


def export_onnx(
    model: nn.Module,
    example: Inputs,
    path: Path,
    opset: int,
    dynamic_batch: bool,
    input_names: tuple[str, ...] = (INPUT_NAME,),
    output_name: str = OUTPUT_NAME,
) -> Path:
    """Write `model` to `path` atomically and check the graph.

    A tuple `example` is token inputs (batch, sequence), named `input_names`: their sequence axis is
    always dynamic, so one file serves any text length, as is the output's when it has one (logits).
    """
    if has_parametrizations(model):
        # A parametrized export holds the dense weight and a Mul: the zeros would never reach the file.
        raise RunFailed(f"{path.name}: model still holds parametrizations; passes must finish before export")
    model.eval()
    axes = _dynamic_axes(model, example, input_names, output_name, dynamic_batch)
    # plain_attention: the fused fast path of nn.TransformerEncoderLayer has no ONNX translation
    with atomic_path(path) as tmp, warnings.catch_warnings(), plain_attention():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                model,
                tuple(example) if isinstance(example, tuple | list) else (example,),
                str(tmp),
                dynamo=False,
                opset_version=opset,
                input_names=list(input_names),
                output_names=[output_name],
                dynamic_axes=axes,
            )
            onnx.checker.check_model(str(tmp))
        except Exception as exc:  # the exporter raises many types; the user needs the module and reason
            raise RunFailed(f"ONNX export of {path.name} failed: {exc}") from exc
    return path


@torch.no_grad()
def _dynamic_axes(model: nn.Module, example: Inputs, names: tuple[str, ...], output: str, dynamic_batch: bool):
    """Axis names for torch.onnx.export: batch when asked, and the sequence axis of token inputs and outputs."""
    if not isinstance(example, tuple | list):
        return {names[0]: {0: "batch"}, output: {0: "batch"}} if dynamic_batch else None
    batch = {0: "batch"} if dynamic_batch else {}
    rank = forward(model, example).dim()
    return {**{n: {**batch, 1: "sequence"} for n in names}, output: {**batch, **({1: "sequence"} if rank == 3 else {})}}


def session(path: Path, provider: str = "cpu", threads: int | None = None, optimize: bool = True):
    """An onnxruntime session; the provider name is sparsecli's short one (cpu, cuda, tensorrt).

    `optimize=False` runs the graph as written: a QDQ model's Quantize/DequantizeLinear then execute
    in float around fp32 kernels (the fake-quantized reference) instead of fusing into INT8 kernels.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    providers = {
        "cpu": ["CPUExecutionProvider"],
        "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
        "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
    }[provider]
    return ort.InferenceSession(str(path), options, providers=providers)


def each_batch(sess, inputs: np.ndarray | Inputs, batch_size: int = 256) -> Iterator[list[np.ndarray]]:
    """Every output of `sess` for `inputs` (a tuple feeds the session's inputs in order), batch by batch;
    a model exported with a fixed batch gets padded batches, trimmed again, so callers never see the padding."""
    arrays = inputs if isinstance(inputs, tuple | list) else (inputs,)
    declared = sess.get_inputs()
    if len(declared) != len(arrays):
        raise RunFailed(f"the ONNX model takes {len(declared)} inputs, {len(arrays)} were given")
    if isinstance(declared[0].shape[0], int):
        batch_size = declared[0].shape[0]
    for start in range(0, len(arrays[0]), batch_size):
        chunks = [np.asarray(a[start : start + batch_size]) for a in arrays]
        rows = len(chunks[0])
        pad = batch_size - rows if isinstance(declared[0].shape[0], int) else 0
        if pad:
            chunks = [np.concatenate([c, np.repeat(c[-1:], pad, axis=0)]) for c in chunks]
        yield [out[:rows] for out in sess.run(None, {d.name: c for d, c in zip(declared, chunks, strict=True)})]


def run_batches(path: Path, inputs: Inputs, batch_size: int = 256, optimize: bool = True) -> np.ndarray:
    """ONNX outputs for `inputs`, in batches (see `each_batch`)."""
    sess = session(path, optimize=optimize)
    return np.concatenate([outputs[0] for outputs in each_batch(sess, inputs, batch_size)])


@torch.no_grad()
def check_parity(path: Path, model: nn.Module, inputs: Inputs, atol: float) -> float:
    """Max abs difference between ONNX and PyTorch on `inputs`; RunFailed above `atol`."""
    model.eval()
    expected = forward(model, inputs).numpy()
    got = run_batches(path, inputs)
    diff = float(np.abs(expected - got).max())
    if not diff <= atol:
        raise RunFailed(f"{path}: ONNX output differs from PyTorch by {diff:.3g} > atol {atol:g}")
    return diff
