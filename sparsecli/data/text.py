"""Text data: JSONL or CSV records with a `text` field (optional `label`, optional `group`), or a built-in set.

The built-in set is real English prose that ships with Python itself: the docstrings of standard
library modules, split into sentences, each record grouped by its module. Splits keep whole groups
together (when records have a `group`), so validation sentences come from modules training never saw.
Texts are tokenized once, padded to `max_length`; batches are trimmed to their longest real sequence.
"""

from __future__ import annotations

import ast
import csv
import importlib.util
import json
import re
import sys
import sysconfig
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import TensorDataset

from sparsecli.data.sources import DataBundle
from sparsecli.errors import BadInput

# Modules whose docstrings are mostly prose; sorted, so the set is the same on every run.
BUILTIN_MODULES = (
    "abc", "argparse", "ast", "asyncio", "base64", "bdb", "calendar", "cmd", "codecs", "collections",
    "concurrent.futures", "configparser", "contextlib", "copy", "csv", "dataclasses", "datetime", "decimal",
    "difflib", "doctest", "email", "enum", "fileinput", "fnmatch", "fractions", "ftplib", "functools", "getopt",
    "gettext", "glob", "gzip", "hashlib", "heapq", "hmac", "html.parser", "http.client", "http.cookiejar",
    "http.server", "imaplib", "inspect", "io", "ipaddress", "json", "logging", "lzma", "mailbox", "mimetypes",
    "multiprocessing", "numbers", "operator", "optparse", "os", "pathlib", "pdb", "pickle", "pkgutil", "platform",
    "poplib", "pprint", "profile", "pydoc", "queue", "random", "re", "reprlib", "sched", "secrets", "selectors",
    "shelve", "shlex", "shutil", "smtplib", "socket", "socketserver", "sqlite3", "ssl", "statistics", "string",
    "subprocess", "symtable", "tarfile", "tempfile", "textwrap", "threading", "timeit", "tokenize", "trace",
    "traceback", "turtle", "types", "typing", "unittest", "urllib.parse", "urllib.request", "uuid", "warnings",
    "weakref", "xml.dom.minidom", "xml.etree.ElementTree", "zipfile", "zipimport",
)  # fmt: skip
_SENTENCE_END = re.compile(r"(?<=[a-z0-9)][.!?])\s+(?=[A-Z])")
_PROSE = re.compile(r"^[A-Z][A-Za-z0-9 ,;:'()\-]+[.!?]$")
# Not docstring prose: the test suite (code), a rot13 poem, a web-browser joke.
_NOT_PROSE = {"test", "this", "antigravity"}
_DOCUMENTED = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


def builtin_records(modules: Sequence[str] = BUILTIN_MODULES) -> list[dict[str, Any]]:
    """Unique prose sentences (6 to 40 words) from these standard-library modules' docstrings, grouped by module.

    Docstrings are read from the source files (parsed, never imported), so any module is safe to read.
    """
    seen: set[str] = set()
    records = []
    for name in sorted(modules):
        for doc in _docstrings(name):
            for sentence in _SENTENCE_END.split(" ".join(doc.split())):
                if _PROSE.match(sentence) and 6 <= len(sentence.split()) <= 40 and sentence not in seen:
                    seen.add(sentence)
                    records.append({"text": sentence, "group": name})
    return records


def stdlib_modules() -> list[str]:
    """Every top-level pure-Python standard-library module and package (private ones too) but the test suite."""
    root = Path(sysconfig.get_paths()["stdlib"])
    names = [p.stem for p in root.glob("*.py")] + [p.parent.name for p in root.glob("*/__init__.py")]
    return sorted(n for n in set(names) if not n.startswith("__") and n not in _NOT_PROSE)


def _docstrings(name: str) -> list[str]:
    """Docstrings of a module (or every file of a package, tests excluded): module, classes, functions."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return []  # a Python built without the module, or a compiled one: no source to read
    origin = Path(spec.origin)
    files = sorted(origin.parent.rglob("*.py")) if spec.submodule_search_locations else [origin]
    docs = []
    for path in (f for f in files if not {"test", "tests", "idle_test"} & set(f.parts)):
        try:
            tree = ast.parse(path.read_bytes())
        except (SyntaxError, ValueError):  # e.g. lib2to3's Python 2 fixtures
            continue
        docs += [d for node in ast.walk(tree) if isinstance(node, _DOCUMENTED) and (d := ast.get_docstring(node))]
    return docs


def read_records(path: Path) -> list[dict[str, Any]]:
    """Records from .jsonl (one object a line) or .csv (header row); each needs a non-empty `text`."""
    try:
        if path.suffix.lower() == ".csv":
            with path.open(newline="", encoding="utf-8") as f:
                records = list(csv.DictReader(f))
        else:
            lines = path.read_text(encoding="utf-8").splitlines()
            records = [json.loads(line) for line in lines if line.strip()]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, csv.Error) as exc:
        raise BadInput(
            f"data.path: cannot read {path} as {'CSV' if path.suffix == '.csv' else 'JSONL'}: {exc}"
        ) from None
    for i, record in enumerate(records):
        if not isinstance(record, dict) or not isinstance(record.get("text"), str) or not record["text"].strip():
            raise BadInput(f"data.path: {path} record {i + 1} has no non-empty 'text' field")
    if len(records) < 2:
        raise BadInput(f"data.path: {path} holds {len(records)} record(s); need at least 2 (train and validation)")
    return records


def split_records(records: list[dict[str, Any]], val_fraction: float, seed: int) -> tuple[list, list]:
    """Seeded split; with `group` fields, whole groups go to validation until it holds `val_fraction` of records
    (groups over half that are passed over, so validation spans several sources)."""
    rng = np.random.default_rng(seed)
    groups = sorted({str(r.get("group", i)) for i, r in enumerate(records)})
    target = max(1, round(len(records) * val_fraction))
    key = [str(r.get("group", i)) for i, r in enumerate(records)]
    size = {g: 0 for g in groups}
    for g in key:
        size[g] += 1
    held: set[str] = set()
    total = 0
    for g in (groups[i] for i in rng.permutation(len(groups))):
        if total >= target:
            break
        if size[g] <= target / 2:  # one big group must not become the whole validation set
            held.add(g)
            total += size[g]
    if not held:
        held.add(min(groups, key=size.__getitem__))
    if len(held) == len(groups):
        held.discard(groups[0])  # both splits must hold something
    val = [r for r, g in zip(records, key, strict=True) if g in held]
    train = [r for r, g in zip(records, key, strict=True) if g not in held]
    return train, val


def _labels(train: list[dict], val: list[dict]) -> tuple[list[int], list[int], int]:
    """Integer labels (strings map to their sorted index); zeros when records carry no `label`."""
    if not any("label" in r for r in train + val):
        return [0] * len(train), [0] * len(val), 1
    missing = [i + 1 for i, r in enumerate(train + val) if r.get("label") in (None, "")]
    if missing:
        raise BadInput(f"data.path: records {missing[:5]} have no 'label' while others do")
    values = [r["label"] for r in train + val]
    numeric = all(isinstance(v, int) or str(v).lstrip("-").isdigit() for v in values)
    names = sorted({int(v) for v in values}) if numeric else sorted({str(v) for v in values})
    index = {n: i for i, n in enumerate(names)} if not numeric else {n: n for n in names}
    to_int = (lambda v: index[int(v)]) if numeric else (lambda v: index[str(v)])  # noqa: E731
    return [to_int(r["label"]) for r in train], [to_int(r["label"]) for r in val], max(index.values()) + 1


def _encode(tokenizer: Any, texts: list[str], names: tuple[str, ...], length: int) -> list[torch.Tensor]:
    encoded = tokenizer(texts, padding="max_length", truncation=True, max_length=length, return_tensors="pt")
    return [encoded[name].long() for name in names]


def load(
    tokenizer: Any,
    input_names: tuple[str, ...],
    *,
    path: Path | None,
    max_length: int,
    val_fraction: float,
    seed: int,
    limit: int | None = None,
    needs_labels: bool = False,
) -> DataBundle:
    """Tokenized text as a DataBundle whose loaders yield ((token tensors...), labels) with padding trimmed."""
    records = read_records(path) if path is not None else builtin_records()
    train, val = split_records(records, val_fraction, seed)
    if limit is not None:
        n_val = max(1, round(limit * len(val) / len(records)))
        train, val = train[: max(1, limit - n_val)], val[:n_val]
    y, y_val, classes = _labels(train, val)
    if needs_labels and classes == 1 and not any("label" in r for r in records):
        raise BadInput(f"data.path: {path or 'the built-in text'} has no 'label' field, which this task trains on")
    tensors = _encode(tokenizer, [r["text"] for r in train], input_names, max_length)
    tensors_val = _encode(tokenizer, [r["text"] for r in val], input_names, max_length)
    return DataBundle(
        TensorDataset(*tensors, torch.tensor(y)),
        TensorDataset(*tensors_val, torch.tensor(y_val)),
        max(2, classes),
        input_names=input_names,
    )


def example(data: DataBundle, length: int, batch: int) -> tuple[torch.Tensor, ...]:
    """The first validation text at exactly `length` tokens (cut, or padded with masked zeros), `batch` times."""
    rows = [t[:1, :length] for t in data.val.tensors[: len(data.input_names)]]
    rows = [torch.nn.functional.pad(r, (0, length - r.shape[1])) for r in rows]
    return tuple(r.repeat(batch, 1) for r in rows)


if __name__ == "__main__":  # python -m sparsecli.data.text > corpus.jsonl: every stdlib module's sentences
    for record in builtin_records(stdlib_modules()):
        sys.stdout.write(json.dumps(record) + "\n")
