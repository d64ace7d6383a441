"""End-to-end: the real recipes through the real CLI, with small settings; exit codes and --json."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from tests.conftest import CONFIGS, FAST, ROOT, overrides


def _quickstart(cli, tmp_path, *extra: str):
    args = overrides(*FAST, f"output={tmp_path / 'run'}", "passes.0.schedule.end_epoch=1", *extra)
    return cli("prune", CONFIGS / "quickstart.yaml", *args, "--json")


def test_quickstart_end_to_end_json(cli, tmp_path):
    code, out, err = _quickstart(cli, tmp_path)
    assert code == 0, err
    report = json.loads(out)
    run = tmp_path / "run"
    for name in ("model.onnx", "dense.onnx", "dense.pt", "checkpoint.pt", "recipe.yaml", "report.json", "report.md"):
        assert (run / name).is_file(), name
    assert json.loads((run / "report.json").read_text()) == report
    # sparsity in the report is what the ONNX file holds
    weights = [numpy_helper.to_array(i) for i in onnx.load(str(run / "model.onnx")).graph.initializer]
    conv_zeros = sum(int((w == 0).sum()) for w in weights if w.ndim == 4)
    conv_total = sum(w.size for w in weights if w.ndim == 4)
    assert conv_zeros / conv_total >= 0.85 - 1e-3
    assert 0.8 < report["sparsity"]["overall"] < 0.85
    assert report["size_gzip_bytes"]["compressed"] < report["size_gzip_bytes"]["dense"]
    assert report["params"]["dense"] == report["params"]["compressed"]  # unstructured: same shapes
    for key in ("accuracy", "macs", "size_bytes", "latency_ms", "speedup", "gates"):
        assert key in report
    assert set(report["latency_ms"]["cpu"]) == {"1", "32"}
    assert set(report["latency_ms"]["cpu"]["32"]["compressed"]) >= {"p50", "p90", "p99"}
    assert max(report["parity_max_abs_diff"].values()) <= 1e-4


def test_failed_gate_exits_1_and_names_it(cli, tmp_path):
    code, out, err = _quickstart(cli, tmp_path, "gates.min_sparsity=0.99")
    assert code == 1
    assert "min_sparsity" in err
    assert json.loads(out)["gates"][0]["passed"] is False


def test_finished_run_is_not_overwritten(cli, tmp_path):
    assert _quickstart(cli, tmp_path)[0] == 0
    before = (tmp_path / "run" / "report.json").read_bytes()
    code, out, err = _quickstart(cli, tmp_path)
    assert code == 2 and "--overwrite" in err
    assert json.loads(out)["exit_code"] == 2
    assert (tmp_path / "run" / "report.json").read_bytes() == before


def test_validate_lists_three_mistakes(cli, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: bad\nmodel: {zoo: convnett}\ndata: {batch_size: 0}\npasses:\n  - {kind: magnitude, target: 1.5}\n"
    )
    code, _, err = cli("validate", bad)
    assert code == 2
    for needle in ("model.zoo", "data.batch_size", "passes[0].target", "line 5"):
        assert needle in err
    assert "Traceback" not in err


def test_validate_pattern_typo_after_model_load(cli):
    code, _, err = cli("validate", CONFIGS / "quickstart.yaml", "--set", 'passes.0.exclude=["*clasifier*"]')
    assert code == 2 and "nearest module names: classifier" in err


def test_validate_ok_json(cli):
    code, out, _ = cli("validate", CONFIGS / "quickstart.yaml", "--json")
    assert code == 0 and json.loads(out)["valid"] is True


def test_recipes_list_and_show(cli):
    code, out, _ = cli("recipes", "--json")
    assert code == 0 and "quickstart" in json.loads(out)
    code, out, _ = cli("recipes", "show", "quickstart")
    assert code == 0 and "kind: magnitude" in out
    assert cli("recipes", "show", "nope")[0] == 2


def test_own_model_factory_checkpoint_and_npz(cli, tmp_path):
    """A user's model from `factory:` with a state-dict checkpoint and .npz data runs the same job."""
    shutil.copy(ROOT / "tests" / "fixtures" / "my_models.py", tmp_path / "my_models_e2e.py")
    sys.path.insert(0, str(tmp_path))
    try:
        from my_models_e2e import build
    finally:
        sys.path.remove(str(tmp_path))
    torch.manual_seed(0)
    torch.save(build(hidden=16).state_dict(), tmp_path / "w.pt")
    rng = np.random.default_rng(0)
    x = rng.random((200, 1, 8, 8), dtype=np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=(x.mean(axis=(1, 2, 3)) > 0.5).astype(np.int64))
    (tmp_path / "own.yaml").write_text(
        "name: own\n"
        "model: {factory: 'my_models_e2e:build', kwargs: {hidden: 16}, checkpoint: w.pt, input_shape: [1, 1, 8, 8]}\n"
        "data: {dataset: npz, path: d.npz, batch_size: 32}\n"
        "passes: [{kind: magnitude, target: 0.5, scope: per_layer, exclude: ['5']}]\n"
        f"output: {tmp_path / 'run'}\n"
    )
    code, out, err = cli("prune", tmp_path / "own.yaml", *overrides(*FAST), "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["sparsity"]["per_layer"]["0"] >= 0.5 - 0.02
    assert report["sparsity"]["per_layer"]["3"] >= 0.5 - 1e-3
    assert report["sparsity"]["per_layer"]["5"] == 0.0


def test_shape_mismatch_is_bad_input(cli, tmp_path):
    code, _, err = cli("validate", CONFIGS / "quickstart.yaml", "--set", "model.input_shape=[1, 3, 8, 8]")
    assert code == 2 and "does not match" in err


def test_help_is_fast_and_lists_commands():
    result = subprocess.run([sys.executable, "-m", "sparsecli", "--help"], capture_output=True, text=True, check=True)
    assert "prune" in result.stdout and "validate" in result.stdout
    imported = subprocess.run(
        [sys.executable, "-c", "import sys, sparsecli.cli; print('torch' in sys.modules)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert imported.stdout.strip() == "False"


def test_report_matches_its_json_schema(cli, tmp_path):
    import jsonschema

    from sparsecli.report import schema

    code, out, err = _quickstart(cli, tmp_path)
    assert code == 0, err
    jsonschema.validate(json.loads(out), schema())
    broken = json.loads(out)
    del broken["sparsity"]["overall"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema())
