"""Bad input and hostile conditions: each a clear message and exit code, no traceback, no half-written file."""

from __future__ import annotations

import errno
import json
import pathlib
import shutil

import numpy as np
import pytest
import torch

from tests.conftest import CONFIGS, FAST, ROOT, overrides


def _prune(cli, tmp_path, *extra: str, recipe=CONFIGS / "quickstart.yaml"):
    args = overrides(*FAST, f"output={tmp_path / 'run'}", "passes.0.schedule.end_epoch=1", *extra)
    return cli("prune", recipe, *args)


def _clean(err: str) -> None:
    assert "Traceback" not in err and "error: " in err


def _leftovers(folder: pathlib.Path) -> list[str]:
    return [p.name for p in folder.rglob("*.tmp")]


def test_disk_full_while_writing_the_report(cli, tmp_path, monkeypatch):
    real = pathlib.Path.write_text

    def full_disk(self, data, *args, **kwargs):
        if self.name.startswith(".report."):  # the atomic temp file of report.json / report.md
            real(self, data[: len(data) // 2], *args, **kwargs)  # half written, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, data, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "write_text", full_disk)
    code, _, err = _prune(cli, tmp_path)
    assert code == 3
    _clean(err)
    assert "report.json" in err and "No space left on device" in err and "free disk space" in err
    run = tmp_path / "run"
    assert (run / "model.onnx").is_file()  # what was finished before stays
    assert not (run / "report.json").exists() and not (run / "report.md").exists()
    assert _leftovers(run) == []


def test_nan_loss_during_finetuning_is_run_failed(cli, tmp_path):
    code, _, err = _prune(cli, tmp_path, "finetune.optimizer.name=sgd", "finetune.optimizer.lr=1e30")
    assert code == 3
    _clean(err)
    assert "loss became nan" in err.lower() and "lower learning rate" in err
    assert not (tmp_path / "run" / "model.onnx").exists()


@pytest.mark.parametrize("cut", [0, 10, 0.5])
def test_truncated_checkpoint_names_the_file(cli, tmp_path, cut):
    torch.save({"w": torch.zeros(64, 64)}, tmp_path / "full.pt")
    data = (tmp_path / "full.pt").read_bytes()
    (tmp_path / "w.pt").write_bytes(data[: int(cut * len(data)) if isinstance(cut, float) else cut])
    code, _, err = _prune(cli, tmp_path, f"model.checkpoint={tmp_path / 'w.pt'}")
    assert code == 2
    _clean(err)
    assert f"cannot read {tmp_path / 'w.pt'}" in err


def test_checkpoint_with_code_in_it_is_refused_and_never_runs(cli, tmp_path):
    """weights_only=True: a pickle that would call a function on load is rejected, not executed."""
    marker = tmp_path / "ran"
    torch.save({"w": _Payload(str(marker))}, tmp_path / "evil.pt")
    code, _, err = _prune(cli, tmp_path, f"model.checkpoint={tmp_path / 'evil.pt'}")
    assert code == 2 and "evil.pt" in err
    assert not marker.exists()


class _Payload:
    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.path),))


def test_yaml_object_tags_are_not_constructed(cli, tmp_path):
    marker = tmp_path / "ran"
    bad = tmp_path / "evil.yaml"
    bad.write_text(f"name: x\nmodel: !!python/object/apply:pathlib.Path.touch [[{marker}]]\n")
    code, _, err = cli("validate", bad)
    assert code == 2 and "not valid YAML" in err and "line 2" in err
    assert not marker.exists()


def test_missing_data_file_names_the_path(cli, tmp_path):
    code, _, err = _prune(cli, tmp_path, "data.dataset=npz", f"data.path={tmp_path / 'nope.npz'}")
    assert code == 2
    _clean(err)
    assert f"data.path: file not found: {tmp_path / 'nope.npz'}" in err


@pytest.mark.parametrize("damage", ["not a zip", "truncated", "bare npy"])
def test_corrupt_data_file_names_the_path(cli, tmp_path, damage):
    x = np.zeros((32, 1, 8, 8), dtype=np.float32)
    np.savez(tmp_path / "good.npz", x=x, y=np.zeros(32, dtype=np.int64))
    content = {
        "not a zip": b"PK\x03\x04 not really a zip",
        "truncated": (tmp_path / "good.npz").read_bytes()[:300],
        "bare npy": b"",
    }[damage]
    if damage == "bare npy":
        np.save(tmp_path / "d.npy", x)
        content = (tmp_path / "d.npy").read_bytes()
    (tmp_path / "d.npz").write_bytes(content)
    code, _, err = _prune(cli, tmp_path, "data.dataset=npz", f"data.path={tmp_path / 'd.npz'}")
    assert code == 2
    _clean(err)
    assert str(tmp_path / "d.npz") in err


def test_data_shape_the_model_cannot_take(cli, tmp_path):
    """A user's model built for 1x8x8 inputs, given 1x5x5 data: named before any training."""
    shutil.copy(ROOT / "tests" / "fixtures" / "my_models.py", tmp_path / "my_models_shape.py")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.random((64, 1, 5, 5), dtype=np.float32), y=rng.integers(0, 10, 64))
    (tmp_path / "r.yaml").write_text(
        "name: shape\nmodel: {factory: 'my_models_shape:build'}\ndata: {dataset: npz, path: d.npz}\n"
        "passes: [{kind: magnitude, target: 0.5}]\n"
    )
    code, _, err = _prune(cli, tmp_path, recipe=tmp_path / "r.yaml")
    assert code == 2
    _clean(err)
    assert "does not accept the data's inputs of shape [1, 1, 5, 5]" in err
    assert not (tmp_path / "run" / "dense.pt").exists()


def test_errors_are_json_with_exit_code(cli, tmp_path):
    code, out, err = cli("prune", tmp_path / "missing.yaml", "--json")
    assert code == 2 and json.loads(out) == {
        "error": f"recipe not found: {tmp_path / 'missing.yaml'}",
        "problems": [],
        "exit_code": 2,
    }
    _clean(err)


def test_debug_shows_the_traceback(cli, tmp_path):
    code, _, err = cli("--debug", "prune", tmp_path / "missing.yaml")
    assert code == 2 and "Traceback" in err


@pytest.mark.parametrize("command", ["benchmark", "analyze"])
@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_corrupt_onnx_file_names_the_path(cli, tmp_path, command, damage):
    from sparsecli.export import export_onnx
    from sparsecli.models.zoo import mlp

    good = export_onnx(mlp((1, 8, 8), 10), torch.rand(1, 1, 8, 8), tmp_path / "good.onnx", 17, True)
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(good.read_bytes()[:200] if damage == "truncated" else b"not a model")
    code, _, err = cli(command, bad)
    assert code == 2, err
    assert str(bad) in err and "Traceback" not in err


def test_unexpected_errors_are_short_without_debug(cli, monkeypatch):
    import sparsecli.recipe

    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(sparsecli.recipe, "load", broken)
    code, _, err = cli("validate", CONFIGS / "quickstart.yaml")
    assert code == 3 and "internal error: ZeroDivisionError: a bug" in err and "Traceback" not in err
