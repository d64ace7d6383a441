"""Inputs for benchmarking any ONNX model: made from its declared inputs, or read from an .npz file.

Dynamic dimensions are resolved in this order: `--shape name=1x128` for that input (its symbolic
dimension names then hold for every input that shares them, e.g. `sequence` in input_ids and
attention_mask); the batch (`--batch`) for a dynamic first axis; `--seq-len` for any other dynamic
axis. A dynamic axis left without a value is an error that names it, never a silent 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sparsecli.errors import BadInput

ONNX_TO_NUMPY = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int16)": np.int16,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(uint16)": np.uint16,
    "tensor(uint32)": np.uint32,
    "tensor(uint64)": np.uint64,
    "tensor(bool)": np.bool_,
}


@dataclass
class InputSpec:
    """What the user said about inputs: explicit shapes, a sequence length, or a file of real arrays."""

    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    seq_len: int | None = None
    npz: Path | None = None
    seed: int = 0

    def describe(self) -> dict:
        return {
            "source": f"npz:{self.npz}" if self.npz else "random",
            "shapes": {k: list(v) for k, v in self.shapes.items()},
            "seq_len": self.seq_len,
            "seed": self.seed,
        }


def parse_shape(text: str) -> tuple[str, tuple[int, ...]]:
    """'input_ids=1x128' -> ('input_ids', (1, 128))."""
    name, sep, dims = text.partition("=")
    try:
        shape = tuple(int(d) for d in dims.lower().replace(",", "x").split("x"))
    except ValueError:
        shape = ()
    if not sep or not name or not shape or min(shape) < 1:
        raise BadInput(f"--shape {text!r}: expected NAME=DIMS with positive dims, e.g. input_ids=1x128")
    return name.strip(), shape


def parse_batches(text: str) -> list[int]:
    """'1,8,32' -> [1, 8, 32]."""
    try:
        batches = [int(b) for b in text.split(",") if b.strip()]
    except ValueError:
        batches = []
    if not batches or min(batches) < 1:
        raise BadInput(f"--batch {text!r}: expected positive integers separated by commas, e.g. 1,8,32")
    return batches


def numpy_type(onnx_type: str, name: str) -> type:
    if onnx_type not in ONNX_TO_NUMPY:
        raise BadInput(f"input {name!r} has type {onnx_type}, which benchmark cannot make; pass --inputs file.npz")
    return ONNX_TO_NUMPY[onnx_type]


def _dynamic(dim) -> bool:
    return not isinstance(dim, int) or dim < 0


def resolve_shapes(declared: Sequence, batch: int | None, spec: InputSpec) -> dict[str, tuple[int, ...]]:
    """Concrete shapes for a session's inputs (`declared`: onnxruntime NodeArg-like objects)."""
    symbols: dict[str, int] = {}
    for arg in declared:  # explicit shapes bind symbolic dimension names shared with other inputs
        if arg.name in spec.shapes:
            given = spec.shapes[arg.name]
            if len(given) != len(arg.shape):
                raise BadInput(f"--shape {arg.name}: {len(given)} dims given, the model declares {list(arg.shape)}")
            for axis, (dim, value) in enumerate(zip(arg.shape, given, strict=True)):
                if not _dynamic(dim) and dim != value:
                    raise BadInput(f"--shape {arg.name}: axis {axis} is fixed at {dim} in the model, got {value}")
                if isinstance(dim, str) and axis > 0:
                    symbols.setdefault(dim, value)
    shapes: dict[str, tuple[int, ...]] = {}
    for arg in declared:
        given = spec.shapes.get(arg.name)
        dims = []
        for axis, dim in enumerate(arg.shape):
            if not _dynamic(dim):
                value = dim
            elif axis == 0 and batch is not None:
                value = batch
            elif given is not None:
                value = given[axis]
            elif axis == 0:
                value = 1
            elif isinstance(dim, str) and dim in symbols:
                value = symbols[dim]
            elif spec.seq_len is not None:
                value = spec.seq_len
            else:
                label = f" ({dim!r})" if isinstance(dim, str) else ""
                raise BadInput(
                    f"input {arg.name!r} axis {axis}{label} is dynamic: give --shape "
                    f"{arg.name}={'x'.join(['1'] + ['N'] * (len(arg.shape) - 1))} or --seq-len N"
                )
            dims.append(int(value))
        shapes[arg.name] = tuple(dims)
    return shapes


def _random(name: str, shape: tuple[int, ...], dtype: type, rng: np.random.Generator) -> np.ndarray:
    if "mask" in name.lower():  # attention masks: attend everywhere, as a real unpadded batch does
        return np.ones(shape, dtype=dtype)
    if dtype is np.bool_:
        return rng.integers(0, 2, size=shape).astype(np.bool_)
    if np.issubdtype(dtype, np.integer):
        # token ids, positions, segment ids: 0 and 1 are valid for any vocabulary or table size
        return rng.integers(0, 2, size=shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def load_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise BadInput(f"--inputs {path}: cannot read as .npz ({exc})") from None


def _from_npz(declared: Sequence, arrays: dict[str, np.ndarray], batch: int | None, path: Path) -> dict:
    names = [arg.name for arg in declared]
    missing = [n for n in names if n not in arrays]
    if missing:
        raise BadInput(f"--inputs {path}: no array for input(s) {', '.join(missing)}; it holds {', '.join(arrays)}")
    feeds = {}
    for arg in declared:
        array = arrays[arg.name]
        dtype = numpy_type(arg.type, arg.name)
        if array.dtype != dtype:
            if np.issubdtype(array.dtype, np.floating) != np.issubdtype(dtype, np.floating):
                raise BadInput(f"--inputs {path}: {arg.name} is {array.dtype}, the model wants {arg.type}")
            array = array.astype(dtype)
        if array.ndim != len(arg.shape):
            raise BadInput(f"--inputs {path}: {arg.name} has shape {array.shape}, the model declares {arg.shape}")
        if batch is not None and _dynamic(arg.shape[0]) and array.shape[0] != batch:
            reps = -(-batch // array.shape[0])  # take the first `batch` rows, repeating the file if it is short
            array = np.concatenate([array] * reps)[:batch]
        for axis, dim in enumerate(arg.shape):
            if not _dynamic(dim) and array.shape[axis] != dim:
                raise BadInput(f"--inputs {path}: {arg.name} axis {axis} is {array.shape[axis]}, the model has {dim}")
        feeds[arg.name] = np.ascontiguousarray(array)
    return feeds


def make_feeds(declared: Sequence, batch: int | None, spec: InputSpec) -> dict[str, np.ndarray]:
    """Arrays for one session's declared inputs at `batch` (None: from --shape or the file, else 1)."""
    if spec.npz is not None:
        return _from_npz(declared, load_npz(spec.npz), batch, spec.npz)
    shapes = resolve_shapes(declared, batch, spec)
    rng = np.random.default_rng(spec.seed)
    return {arg.name: _random(arg.name, shapes[arg.name], numpy_type(arg.type, arg.name), rng) for arg in declared}


def items(feeds: dict[str, np.ndarray]) -> int:
    """Items per call for throughput: the first axis of the first input (1 for a scalar input)."""
    first = next(iter(feeds.values()), None)
    return int(first.shape[0]) if first is not None and first.ndim else 1


def check_names(declared_per_model: Sequence[Sequence], spec: InputSpec) -> None:
    """--shape names must belong to some model's inputs (a typo would otherwise be ignored)."""
    known = {arg.name for declared in declared_per_model for arg in declared}
    unknown = [n for n in spec.shapes if n not in known]
    if unknown:
        raise BadInput(f"--shape names no input {', '.join(map(repr, unknown))}; inputs: {', '.join(sorted(known))}")
