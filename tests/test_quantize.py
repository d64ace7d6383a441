"""INT8 quantization: real INT8 weights, smaller files, the parity checks, auto's choice, and the recipe end to end."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from sparsecli import measure, quantize, storage
from sparsecli.data import sources
from sparsecli.errors import RunFailed
from sparsecli.export import export_onnx
from sparsecli.models.zoo import ZOO
from sparsecli.quantize import Setting
from sparsecli.recipe import ExportSpec
from sparsecli.tasks import TASKS
from sparsecli.train import TrainConfig, fit
from tests.conftest import CONFIGS, FAST, overrides

STATIC, DYNAMIC = Setting("static", False), Setting("dynamic", True)


@pytest.fixture(scope="module")
def digits() -> sources.DataBundle:
    return sources.load("digits", path=None, val_fraction=0.2, seed=0)


@pytest.fixture(scope="module")
def fp32(digits, tmp_path_factory):
    """A small convnet trained briefly on digits, half of each conv weight zeroed, exported to fp32 ONNX."""
    torch.manual_seed(0)
    model = ZOO["convnet"]((1, 8, 8), 10, width=16)
    fit(model, digits.loader("train", 64, 0), TrainConfig(epochs=2, lr=0.01), [])
    with torch.no_grad():
        for conv in (m for m in model.modules() if isinstance(m, torch.nn.Conv2d)):
            conv.weight[conv.weight.abs() < conv.weight.abs().median()] = 0
    path = tmp_path_factory.mktemp("fp32") / "model.fp32.onnx"
    return export_onnx(model.eval(), digits.val.tensors[0][:1], path, 17, dynamic_batch=True)


def _samples(digits) -> tuple[np.ndarray, ...]:
    return (digits.train.tensors[0][:64].numpy(),)


def _evidence(digits) -> quantize.Evidence:
    return quantize.Evidence(digits.loader("val", 512), TASKS["classification"], _samples(digits))


@pytest.mark.parametrize("setting", [STATIC, DYNAMIC], ids=lambda s: s.label)
def test_int8_weights_smaller_file_same_zeros(setting, fp32, digits, tmp_path):
    path = quantize.quantize_file(fp32, tmp_path / "model.onnx", setting, _samples(digits))
    weights = dict(measure.onnx_weights(onnx.load(str(path))))
    assert {w.dtype for w in weights.values()} == {np.dtype(np.int8)}
    assert set(weights) == set(dict(measure.onnx_weights(onnx.load(str(fp32)))))
    assert path.stat().st_size < 0.45 * fp32.stat().st_size
    if quantize.REDUCE_RANGE:  # 7-bit weights on a CPU whose INT8 kernels would clamp full-range ones
        assert max(int(np.abs(w.astype(np.int16)).max()) for w in weights.values()) <= 64
    # symmetric INT8 weights keep every pruned zero a zero
    assert measure.onnx_sparsity(path)["overall"] >= measure.onnx_sparsity(fp32)["overall"]
    check = quantize.check_int8(path, fp32, setting, _evidence(digits), ExportSpec())
    assert check["passed"], check["problems"]
    assert check["metric"] == "accuracy" and check["fp32_accuracy"] > 0.3  # well above chance (0.1)
    assert check["drop_points"] == pytest.approx(100 * (check["fp32_accuracy"] - check["accuracy"]))
    assert check["drop_points"] <= ExportSpec().max_quantize_drop
    assert ("fake_quant_rel_diff" in check) == (setting.mode == "static")


@pytest.mark.parametrize(
    ("machine", "flags", "clamps"),
    [
        ("x86_64", "fpu avx2 fma", True),  # AVX2 only: VPMADDUBSW adds pairs in 16 bits
        ("x86_64", "avx2 avx512f avx512_vnni", False),
        ("AMD64", "avx2 avx_vnni", False),
        ("x86_64", None, True),  # flags unknown (not Linux): assume the worst
        ("aarch64", "fp asimd", False),
    ],
)
def test_reduce_range_only_where_int8_kernels_clamp(machine, flags, clamps):
    assert quantize.u8s8_saturates(machine, flags) is clamps


def test_static_calibrates_at_a_fixed_batch(digits, tmp_path):
    torch.manual_seed(0)
    fixed = export_onnx(ZOO["mlp"]((1, 8, 8), 10).eval(), torch.rand(5, 1, 8, 8), tmp_path / "f.onnx", 17, False)
    path = quantize.quantize_file(fixed, tmp_path / "q.onnx", STATIC, (_samples(digits)[0][:7],))
    assert "QuantizeLinear" in {n.op_type for n in onnx.load(str(path)).graph.node}


def test_quantize_reads_a_file_stored_with_sparse_initializers(fp32, digits, tmp_path):
    model = onnx.load(str(fp32))
    for init in model.graph.initializer:  # 80% zeros in the conv weights: sparse storage now pays
        if len(init.dims) == 4:
            weight = onnx.numpy_helper.to_array(init).copy()
            weight[np.abs(weight) < np.quantile(np.abs(weight), 0.8)] = 0
            init.CopyFrom(onnx.numpy_helper.from_array(weight, init.name))
    dense, sparse = tmp_path / "dense.onnx", tmp_path / "sparse.onnx"
    onnx.save(model, str(dense))
    onnx.save(model, str(sparse))
    assert storage.store_sparse(sparse, digits.val.tensors[0][:8], atol=1e-6)["applied"]
    path = quantize.quantize_file(sparse, tmp_path / "q.onnx", STATIC, _samples(digits))
    assert quantize.check_int8(path, dense, STATIC, _evidence(digits), ExportSpec(max_quantize_drop=5))["passed"]


def _optimized_ops(path, level) -> set[str]:
    options = ort.SessionOptions()
    options.graph_optimization_level = level
    options.optimized_model_filepath = str(path.with_suffix(".seen.onnx"))
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return {n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node}


def test_fake_quant_reference_runs_float_kernels(fp32, digits, tmp_path):
    """The parity reference is a different computation: float Conv around Q/DQ, not the fused INT8 kernel."""
    path = quantize.quantize_file(fp32, tmp_path / "model.onnx", STATIC, _samples(digits))
    assert "QLinearConv" in _optimized_ops(path, ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
    reference_ops = _optimized_ops(path, ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    assert "QLinearConv" not in reference_ops and "Conv" in reference_ops


def test_fake_quant_check_fails_when_kernels_diverge(fp32, digits, tmp_path, monkeypatch):
    path = quantize.quantize_file(fp32, tmp_path / "model.onnx", STATIC, _samples(digits))
    real = quantize.each_batch

    def skewed(sess, inputs, batch_size=256):
        fused = sess.get_session_options().graph_optimization_level != ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        for outputs in real(sess, inputs, batch_size):  # the INT8 kernels off by 20%
            yield [o * 1.2 for o in outputs] if fused else outputs

    monkeypatch.setattr(quantize, "each_batch", skewed)
    check = quantize.check_int8(path, fp32, STATIC, _evidence(digits), ExportSpec(max_quantize_drop=100))
    assert not check["passed"] and "fake-quantized reference" in check["problems"][0]
    assert check["fake_quant_rel_diff"] == pytest.approx(0.2, rel=0.05)


def test_accuracy_floor_rejects_a_broken_int8_file(fp32, digits, tmp_path):
    broken = onnx.load(str(quantize.quantize_file(fp32, tmp_path / "q.onnx", DYNAMIC, _samples(digits))))
    for init in broken.graph.initializer:  # every INT8 weight negated: a quantizer bug of the worst kind
        if init.data_type == onnx.TensorProto.INT8:
            init.CopyFrom(onnx.numpy_helper.from_array(-onnx.numpy_helper.to_array(init), init.name))
    onnx.save(broken, str(tmp_path / "broken.onnx"))
    check = quantize.check_int8(tmp_path / "broken.onnx", fp32, DYNAMIC, _evidence(digits), ExportSpec())
    assert not check["passed"] and "export.max_quantize_drop" in check["problems"][0]
    assert check["drop_points"] > 10


def test_fitting_settings_follow_the_operators(fp32, tmp_path):
    settings, skipped = quantize.fitting_settings(fp32)  # Conv + Gemm: both modes fit
    labels = {
        "dynamic",
        "dynamic-per-channel",
        "static",
        "static-per-channel",
        "static-s8s8",
        "static-per-channel-s8s8",
    }
    assert {s.label for s in settings} == labels
    assert skipped == {}
    mlp = export_onnx(ZOO["mlp"]((1, 8, 8), 10).eval(), torch.rand(1, 1, 8, 8), tmp_path / "mlp.onnx", 17, True)
    settings, skipped = quantize.fitting_settings(mlp)  # Gemm only: quantize_dynamic has no Gemm kernel
    assert {s.mode for s in settings} == {"static"} and "Gemm" in skipped["dynamic"]


def _trial(setting: str, drop: float, speedup: float, passed: bool = True) -> dict:
    return {
        "setting": setting,
        "metric": "accuracy",
        "accuracy": 0.99 - drop / 100,
        "budget_drop_points": drop,
        "speedup_vs_fp32": speedup,
        "passed": passed,
        "problems": [] if passed else ["bad"],
        "p50_ms": {"1": 1.0, "32": 2.0},
        "provider": "cpu",
    }


def test_auto_keeps_the_fastest_within_budget():
    trials = [_trial("dynamic", 0.0, 0.2), _trial("static", 2.0, 3.0), _trial("static-per-channel", 0.5, 2.0)]
    best, reason = quantize.choose(trials, max_drop=1.0, budget="gate")
    assert best == 2 and reason.startswith("static-per-channel: fastest of 2 within gate: 2.00x")
    assert quantize.choose(trials, max_drop=2.0, budget="gate")[0] == 1


def test_auto_skips_parity_failures_and_reports_a_blown_budget():
    trials = [_trial("static", 0.0, 5.0, passed=False), _trial("dynamic", 9.0, 0.5), _trial("d-pc", 4.0, 0.4)]
    best, reason = quantize.choose(trials, max_drop=1.0, budget="gate")
    assert best == 2 and "none stayed within gate" in reason
    with pytest.raises(RunFailed, match="no INT8 variant passed parity"):
        quantize.choose(trials[:1], max_drop=100.0, budget="gate")


def _run(cli, tmp_path, *extra: str) -> tuple[int, dict, str]:
    args = overrides(*FAST, f"output={tmp_path / 'run'}", "passes.0.schedule.end_epoch=1", *extra)
    code, out, err = cli("prune", CONFIGS / "quantized.yaml", *args, "--json")
    return code, json.loads(out), err


def test_quantized_recipe_end_to_end(cli, tmp_path):
    code, report, err = _run(cli, tmp_path, "export.sparse_initializers=true")
    assert code == 0, err
    run = tmp_path / "run"
    chain = {c["file"]: c for c in report["chain"]}
    assert list(chain) == ["dense.onnx", "model.fp32.onnx", "model.onnx", "dense.int8.onnx"]
    assert {w.dtype for _, w in measure.onnx_weights(onnx.load(str(run / "model.onnx")))} == {np.dtype(np.int8)}
    assert (
        report["size_bytes"]["compressed"] == chain["model.onnx"]["size_bytes"] == (run / "model.onnx").stat().st_size
    )
    assert chain["model.onnx"]["size_gzip_bytes"] < chain["model.fp32.onnx"]["size_gzip_bytes"]
    assert chain["dense.int8.onnx"]["size_bytes"] < 0.4 * chain["dense.onnx"]["size_bytes"]
    assert report["accuracy"]["compressed"] == chain["model.onnx"]["accuracy"]
    assert set(report["latency_ms"]["cpu"]["32"]) == {"dense", "compressed"}
    assert set(chain["dense.int8.onnx"]["latency_ms"]["cpu"]) == {"1", "32"}
    q = report["quantization"]
    assert q["setting"] == "static" and all(p["passed"] for p in q["parity"].values())
    assert q["reduce_range"] is quantize.REDUCE_RANGE
    # the fp32 pruned file is stored sparse (smaller, same outputs); the dense one has nothing to store sparse
    assert report["storage"]["model.fp32.onnx"]["applied"] and not report["storage"]["dense.onnx"]["applied"]
    assert len(onnx.load(str(run / "model.fp32.onnx")).graph.sparse_initializer) > 0
    assert "## Size chain" in (run / "report.md").read_text()


def test_quantized_recipe_auto_reports_what_it_tried(cli, tmp_path):
    code, report, err = _run(cli, tmp_path, "export.quantize=auto", "export.sparse_initializers=false")
    assert code == 0, err
    q = report["quantization"]
    tried = {t["setting"]: t for t in q["tried"]}
    assert len(tried) == 6 and {"dynamic", "static", "static-s8s8"} <= set(tried)
    assert q["reason"].startswith(q["setting"]) and tried[q["setting"]]["passed"]
    assert all(set(t["p50_ms"]) == {"1", "32"} and t["speedup_vs_fp32"] > 0 for t in tried.values())
    assert "storage" not in report
