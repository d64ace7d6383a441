"""`sparsecli benchmark` through the CLI: JSON and its schema, --shape on a transformer, the gates, errors.

Timing assertions are gross on purpose (a model ~100x slower): other jobs may share the machine.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from sparsecli import bench
from tests.fixtures.bench_models import export_encoder, export_mlp

SCHEMA = Path(bench.__file__).parent / "schemas" / "benchmark.schema.json"
QUICK = ["--warmup", "1", "--iterations", "5", "--max-wait", "0"]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bench_cli")
    (folder / "rebuilt").mkdir()
    return {
        "fast": export_mlp(folder / "fast.onnx", 16),
        "fast_rebuilt": export_mlp(folder / "rebuilt" / "fast.onnx", 16),
        "slow": export_mlp(folder / "slow.onnx", 1024, layers=3),  # ~100x the work of `fast`
        "encoder": export_encoder(folder / "encoder.onnx"),
    }


def test_json_has_the_documented_keys(cli, models):
    jsonschema = pytest.importorskip("jsonschema")
    code, out, err = cli("benchmark", models["fast"], models["slow"], "--batch", "1,4", *QUICK, "--json")
    assert code == 0, err
    doc = json.loads(out)
    jsonschema.validate(doc, json.loads(SCHEMA.read_text()))
    assert [(r["provider"], r["batch"]) for r in doc["ratios"]] == [("cpu", 1), ("cpu", 4)]
    for ratio in doc["ratios"]:
        assert {"provider", "batch", "speedup", "interval"} <= set(ratio)
        assert ratio["speedup"] < 0.5  # slow.onnx is much slower than the baseline
    latency = doc["results"][0]["models"][0]["latency_ms"]
    assert {"p50", "p90", "p99", "mean", "std", "throughput"} <= set(latency)
    assert doc["models"][0]["memory"]["method"]
    assert "timing rounds" in err or err == ""  # progress goes to stderr, never into the JSON


def test_transformer_with_dynamic_axes_and_int64_inputs_benchmarks_with_shape(cli, models):
    code, out, err = cli(
        "benchmark", models["encoder"], "--shape", "input_ids=1x32", "--batch", "1,4", *QUICK, "--json"
    )
    assert code == 0, err
    doc = json.loads(out)
    shapes = [r["models"][0]["input_shapes"] for r in doc["results"]]
    assert shapes == [
        {"input_ids": [1, 32], "attention_mask": [1, 32]},
        {"input_ids": [4, 32], "attention_mask": [4, 32]},
    ]
    assert doc["models"][0]["inputs"][0]["type"] == "tensor(int64)"


def test_transformer_without_sequence_length_says_how(cli, models):
    code, _, err = cli("benchmark", models["encoder"], *QUICK)
    assert code == 2
    assert "--shape input_ids=1xN" in err and "Traceback" not in err


def test_npz_inputs(cli, models, tmp_path):
    np.savez(tmp_path / "x.npz", input_ids=np.zeros((3, 9), np.int64), attention_mask=np.ones((3, 9), np.int64))
    code, out, err = cli("benchmark", models["encoder"], "--inputs", tmp_path / "x.npz", *QUICK, "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["results"][0]["batch"] == 3 and doc["inputs"]["source"].startswith("npz:")


def test_compare_fails_on_a_slower_model_and_passes_on_the_same(cli, models, tmp_path):
    saved = tmp_path / "baseline.json"
    code, _, err = cli("benchmark", models["fast"], "--batch", "8", *QUICK, "--save", saved, "--quiet")
    assert code == 0, err
    assert json.loads(saved.read_text())["kind"] == "sparsecli.benchmark"
    # a new build at another path compares with the saved figures (matched by provider and batch)
    code, out, err = cli(
        "benchmark",
        models["fast_rebuilt"],
        "--batch",
        "8",
        *QUICK,
        "--compare",
        saved,
        "--max-slowdown",
        "50%",
        "--json",
    )  # generous: the machine may be busy between runs
    assert code == 0, err
    assert json.loads(out)["comparison"]["passed"] is True
    code, out, err = cli(
        "benchmark", models["slow"], "--batch", "8", *QUICK, "--compare", saved, "--max-slowdown", "50%", "--json"
    )
    assert code == 1
    assert "slower than fast.onnx" in err
    entry = json.loads(out)["comparison"]["entries"][0]
    assert entry["failed"] and entry["slowdown"] > 1.0


def test_compare_needs_a_common_batch_and_the_same_model_count(cli, models, tmp_path):
    saved = tmp_path / "b.json"
    assert cli("benchmark", models["fast"], "--batch", "8", *QUICK, "--save", saved, "--quiet")[0] == 0
    code, _, err = cli("benchmark", models["fast"], "--batch", "2", *QUICK, "--compare", saved)
    assert code == 2 and "no provider and batch in common" in err and "cpu batch 8" in err
    code, _, err = cli("benchmark", models["fast"], models["slow"], "--batch", "8", *QUICK, "--compare", saved)
    assert code == 2 and "matched by position" in err
    (tmp_path / "junk.json").write_text("{}")
    code, _, err = cli("benchmark", models["fast"], *QUICK, "--compare", tmp_path / "junk.json")
    assert code == 2 and "not a file written by" in err


def test_max_slowdown_without_compare_gates_on_the_runs_own_ratios(cli, models):
    code, out, err = cli(
        "benchmark", models["fast"], models["slow"], "--batch", "8", *QUICK, "--max-slowdown", "5%", "--json"
    )
    assert code == 1, err
    assert json.loads(out)["comparison"]["against"] == "baseline"
    code, _, err = cli("benchmark", models["slow"], models["fast"], "--batch", "8", *QUICK, "--max-slowdown", "5%")
    assert code == 0, err


def test_markdown_for_a_pull_request(cli, models):
    code, out, err = cli("benchmark", models["fast"], models["slow"], *QUICK, "--markdown")
    assert code == 0, err
    assert out.startswith("## sparsecli benchmark")
    assert "| model | p50 ms |" in out and "slow.onnx" in out


def test_table_output(cli, models):
    code, out, err = cli("benchmark", models["fast"], models["slow"], *QUICK, "--no-control")
    assert code == 0, err
    assert "speedup" in out and "slow.onnx" in out and "(control)" not in out


@pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(), reason="CUDA is available here")
def test_unavailable_provider_exits_2_listing_available(cli, models):
    code, out, err = cli("benchmark", models["fast"], "--provider", "cuda", "--json")
    assert code == 2
    assert "--provider cuda is not available" in err and "available: cpu" in err
    assert json.loads(out)["exit_code"] == 2


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--iterations", "3", "--min-time", "1"], "not both"),
        (["--shape", "input=1-64"], "--shape"),
        (["--max-slowdown", "5"], "5%"),
        (["--provider", "tpu"], "--provider tpu"),
        (["--graph-opt", "max"], "--graph-opt 'max'"),
        (["--batch", "0"], "--batch"),
        (["--json", "--markdown"], "pick one"),
    ],
)
def test_bad_arguments_exit_2(cli, models, args, needle):
    code, _, err = cli("benchmark", models["fast"], *args)
    assert code == 2
    assert needle in err and "Traceback" not in err


def test_missing_model_file_exits_2(cli, tmp_path):
    code, _, err = cli("benchmark", tmp_path / "missing.onnx")
    assert code == 2 and "no such model file" in err


@pytest.mark.gpu
@pytest.mark.skipif("CUDAExecutionProvider" not in ort.get_available_providers(), reason="needs an NVIDIA GPU")
def test_cuda_benchmark(cli, models):
    code, out, err = cli(
        "benchmark", models["fast"], models["slow"], "--provider", "cuda", "--batch", "1,8", *QUICK, "--json"
    )
    assert code == 0, err
    doc = json.loads(out)
    assert doc["settings"]["io_binding"] is True
    assert all(r["provider"] == "cuda" for r in doc["ratios"])
