"""Pruned weights stored as ONNX sparse initializers, kept only where the file shrinks and outputs match.

A sparse initializer holds the nonzero values and their flat positions as int64 (the ONNX checker
rejects narrower indices), so a tensor shrinks only when its density is below
itemsize / (itemsize + 8): about 1/3 for fp32, 1/9 for INT8. onnxruntime makes sparse initializers
dense when it loads a model, so this is a raw-size win, never a speed win. The kept-or-not rule is raw
bytes; gzip is recorded both ways because the int64 indices compress worse than runs of zeros (a 90%
sparse INT8 convnet: raw 67 -> 56 kB, gzip 13.3 -> 16.2 kB), so for downloads gzip alone may be better.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from sparsecli import measure
from sparsecli.export import run_batches
from sparsecli.passes.base import Inputs

INDEX_BYTES = 8


def sparsify(model: onnx.ModelProto) -> list[str]:
    """Move each initializer whose sparse form is smaller into `graph.sparse_initializer`; returns their names."""
    keep, moved = [], []
    for init in model.graph.initializer:
        array = numpy_helper.to_array(init)
        flat = array.reshape(-1)
        nonzero = np.flatnonzero(flat)
        if array.ndim == 0 or len(nonzero) * (array.itemsize + INDEX_BYTES) >= array.nbytes:
            keep.append(init)
            continue
        values = numpy_helper.from_array(flat[nonzero], init.name)
        indices = numpy_helper.from_array(nonzero.astype(np.int64), f"{init.name}.indices")
        moved.append(helper.make_sparse_tensor(values, indices, list(array.shape)))
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
    model.graph.sparse_initializer.extend(moved)
    return [sparse.values.name for sparse in moved]


def densify(model: onnx.ModelProto) -> int:
    """Turn sparse initializers back into dense ones, for tools that do not read them; returns how many."""
    sparse = list(model.graph.sparse_initializer)
    arrays = measure.initializers(model)
    model.graph.initializer.extend(numpy_helper.from_array(arrays[s.values.name], s.values.name) for s in sparse)
    del model.graph.sparse_initializer[:]
    return len(sparse)


def store_sparse(path: Path, inputs: Inputs, atol: float) -> dict[str, Any]:
    """Rewrite `path` with sparse initializers if the file shrinks and onnxruntime runs it to `atol`.

    Returns what happened and why, for the report; the file is left as it was otherwise.
    """
    model = onnx.load(str(path))
    moved = sparsify(model)
    sizes = measure.file_sizes(path)
    before = sizes["raw"]
    record: dict[str, Any] = {
        "applied": False,
        "tensors": len(moved),
        "size_bytes_before": before,
        "size_gzip_bytes_before": sizes["gzip"],
    }
    if not moved:
        return {**record, "reason": "no initializer is smaller stored sparse"}
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        candidate = Path(tmp) / path.name
        onnx.save(model, str(candidate))
        onnx.checker.check_model(str(candidate))
        sizes = measure.file_sizes(candidate)
        record.update(size_bytes_after=sizes["raw"], size_gzip_bytes_after=sizes["gzip"])
        after = sizes["raw"]
        if after >= before:
            return {**record, "reason": "the file would not shrink"}
        try:
            diff = float(np.abs(run_batches(candidate, inputs) - run_batches(path, inputs)).max())
        except Exception as exc:  # onnxruntime raises its own types; the report says what it said
            return {**record, "reason": f"onnxruntime cannot run it: {type(exc).__name__}: {exc}"}
        record["max_abs_diff"] = diff
        if diff > atol:
            return {**record, "reason": f"outputs differ by {diff:.3g} > export.atol {atol:g}"}
        os.replace(candidate, path)
    gzip_change = record["size_gzip_bytes_after"] - record["size_gzip_bytes_before"]
    gzip_note = f"gzip {abs(gzip_change):,} bytes {'larger' if gzip_change > 0 else 'smaller'}"
    return {**record, "applied": True, "reason": f"{before - after:,} bytes smaller ({gzip_note}), same outputs"}


def apply(paths: list[Path], inputs: Inputs, atol: float) -> dict[str, dict[str, Any]]:
    """`store_sparse` on each file of the run (dense ones simply stay as they are); the report's `storage`."""
    return {path.name: store_sparse(path, inputs, atol) for path in paths}
