"""ONNX export with the TorchScript exporter, the ONNX checker, and a parity check on real inputs.

The TorchScript exporter (`dynamo=False`) exports these models in under a second and needs no
onnxscript; the dynamo exporter is several times slower for the same graph.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from sparsecli.atomic import atomic_path
from sparsecli.errors import RunFailed
from sparsecli.passes.masking import has_parametrizations

INPUT_NAME = "input"
OUTPUT_NAME = "output"


def export_onnx(model: nn.Module, example: torch.Tensor, path: Path, opset: int, dynamic_batch: bool) -> Path:
    """Write `model` to `path` atomically and check the graph."""
    if has_parametrizations(model):
        # A parametrized export holds the dense weight and a Mul: the zeros would never reach the file.
        raise RunFailed(f"{path.name}: model still holds parametrizations; passes must finish before export")
    model.eval()
    axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                model,
                (example,),
                str(tmp),
                dynamo=False,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes=axes,
            )
            onnx.checker.check_model(str(tmp))
        except Exception as exc:  # the exporter raises many types; the user needs the module and reason
            raise RunFailed(f"ONNX export of {path.name} failed: {exc}") from exc
    return path


def session(path: Path, provider: str = "cpu", threads: int | None = None):
    """An onnxruntime session; the provider name is sparsecli's short one (cpu, cuda, tensorrt)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    providers = {
        "cpu": ["CPUExecutionProvider"],
        "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
        "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
    }[provider]
    return ort.InferenceSession(str(path), options, providers=providers)


def run_batches(path: Path, inputs: torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """ONNX outputs for `inputs`, in batches; a model exported with a fixed batch gets padded batches."""
    sess = session(path)
    declared = sess.get_inputs()[0]
    if isinstance(declared.shape[0], int):
        batch_size = declared.shape[0]
    outs = []
    for start in range(0, len(inputs), batch_size):
        chunk = inputs[start : start + batch_size].numpy()
        pad = batch_size - len(chunk) if isinstance(declared.shape[0], int) else 0
        if pad:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, axis=0)])
        outs.append(sess.run(None, {declared.name: chunk})[0][: len(chunk) - pad])
    return np.concatenate(outs)


@torch.no_grad()
def check_parity(path: Path, model: nn.Module, inputs: torch.Tensor, atol: float) -> float:
    """Max abs difference between ONNX and PyTorch on `inputs`; RunFailed above `atol`."""
    model.eval()
    expected = model(inputs).numpy()
    got = run_batches(path, inputs)
    diff = float(np.abs(expected - got).max())
    if not diff <= atol:
        raise RunFailed(f"{path}: ONNX output differs from PyTorch by {diff:.3g} > atol {atol:g}")
    return diff
