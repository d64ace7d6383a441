"""Load the recipe's data into tensors, split into train and validation, seeded.

Digits is scikit-learn's bundled copy of the UCI optical handwritten digits (1,797 8x8 images,
Alpaydin & Kaynak, 1998): real data that needs no network.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from sparsecli.errors import BadInput


@dataclass
class DataBundle:
    """Train and validation tensors, the labels last. With `input_names` the first tensors are those token
    inputs (input_ids, attention_mask, ...) padded to one length: batches then carry them as a tuple,
    trimmed to the batch's longest sequence so short texts do not pay for the padding."""

    train: TensorDataset
    val: TensorDataset
    num_classes: int
    input_names: tuple[str, ...] = ()

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train.tensors[0].shape[1:])

    def loader(self, split: str, batch_size: int, seed: int = 0, shuffle: bool | None = None) -> DataLoader:
        dataset = self.train if split == "train" else self.val
        shuffle = split == "train" if shuffle is None else shuffle
        generator = torch.Generator().manual_seed(seed)
        collate = self._token_batch if self.input_names else None
        return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator, collate_fn=collate)

    def head(self, split: str, count: int) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """The first `count` inputs of a split, as a batch would carry them."""
        dataset = self.train if split == "train" else self.val
        if not self.input_names:
            return dataset.tensors[0][:count]
        return self._token_batch(list(zip(*(t[:count] for t in dataset.tensors), strict=True)))[0]

    def _token_batch(self, samples: list[tuple[torch.Tensor, ...]]) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        columns = [torch.stack(column) for column in zip(*samples, strict=True)]
        count = len(self.input_names)
        length = max(1, int(columns[1].sum(1).max())) if "attention_mask" in self.input_names else None
        return tuple(c[:, :length] for c in columns[:count]), columns[-1]


def digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.data / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    return x, bunch.target.astype(np.int64)


def synthetic(shape: list[int], classes: int, samples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian inputs labelled by a fixed random linear teacher, so the task is learnable."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((samples, *shape)).astype(np.float32)
    teacher = rng.standard_normal((int(np.prod(shape)), classes)).astype(np.float32)
    return x, (x.reshape(samples, -1) @ teacher).argmax(1).astype(np.int64)


def read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as arrays:
            found = {k: arrays[k] for k in arrays.files}
    except (OSError, ValueError, EOFError, TypeError, zipfile.BadZipFile) as exc:  # TypeError: a bare .npy
        raise BadInput(f"data.path: cannot read {path} as .npz: {exc or type(exc).__name__}") from None
    missing = {"x", "y"} - set(found)
    if missing:
        raise BadInput(f"data.path: {path} lacks arrays {sorted(missing)} (has {sorted(found)})")
    return found


def split(x: np.ndarray, y: np.ndarray, val_fraction: float, seed: int):
    """Seeded shuffle, then the last `val_fraction` becomes validation."""
    order = np.random.default_rng(seed).permutation(len(x))
    n_val = max(1, round(len(x) * val_fraction))
    val, train = order[:n_val], order[n_val:]
    return x[train], y[train], x[val], y[val]


def bundle(x, y, x_val, y_val) -> DataBundle:
    if len(x) != len(y) or len(x_val) != len(y_val):
        raise BadInput(f"data: {len(x)} inputs but {len(y)} labels (validation: {len(x_val)} vs {len(y_val)})")
    as_x = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
    as_y = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64))  # noqa: E731
    num_classes = int(max(y.max(), y_val.max())) + 1
    return DataBundle(TensorDataset(as_x(x), as_y(y)), TensorDataset(as_x(x_val), as_y(y_val)), num_classes)


def load(
    dataset: str,
    *,
    path: Path | None,
    val_fraction: float,
    seed: int,
    shape: list[int] | None = None,
    classes: int | None = None,
    samples: int = 1024,
) -> DataBundle:
    """The recipe's data as a DataBundle."""
    if dataset == "digits":
        return bundle(*split(*digits(), val_fraction, seed))
    if dataset == "synthetic":
        return bundle(*split(*synthetic(shape or [1, 8, 8], classes or 10, samples, seed), val_fraction, seed))
    if dataset == "npz":
        assert path is not None
        arrays = read_npz(path)
        if "x_val" in arrays and "y_val" in arrays:
            return bundle(arrays["x"], arrays["y"], arrays["x_val"], arrays["y_val"])
        return bundle(*split(arrays["x"], arrays["y"], val_fraction, seed))
    raise BadInput(f"data.dataset: unknown dataset {dataset!r}")
