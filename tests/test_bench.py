"""The benchmark harness: inputs from declared ONNX inputs, statistics, contention accounting, the document."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from sparsecli import bench, bench_stats, bench_system
from sparsecli.bench_inputs import InputSpec, make_feeds, parse_batches, parse_shape, resolve_shapes
from sparsecli.errors import BadInput
from tests.fixtures.bench_models import export_encoder, export_mlp

SCHEMA = Path(bench.__file__).parent / "schemas" / "benchmark.schema.json"
HAS_CUDA = "CUDAExecutionProvider" in ort.get_available_providers()
QUICK = {"warmup": 1, "iterations": 4, "max_wait_s": 0}


@pytest.fixture(scope="module")
def encoder(tmp_path_factory) -> Path:
    return export_encoder(tmp_path_factory.mktemp("enc") / "encoder.onnx")


@pytest.fixture(scope="module")
def mlps(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("mlp")
    return export_mlp(folder / "fast.onnx", 16), export_mlp(folder / "slow.onnx", 1024, layers=3)


def _declared(path: Path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_inputs()


# -- inputs ----------------------------------------------------------------------------------------------


def test_encoder_declares_int64_inputs_with_dynamic_batch_and_sequence(encoder):
    declared = {a.name: a for a in _declared(encoder)}
    assert declared["input_ids"].type == "tensor(int64)"
    assert declared["input_ids"].shape == ["batch", "sequence"]


def test_shape_binds_shared_sequence_axis_and_batch_overrides_first_axis(encoder):
    declared = _declared(encoder)
    spec = InputSpec(shapes={"input_ids": (1, 12)})
    assert resolve_shapes(declared, None, spec) == {"input_ids": (1, 12), "attention_mask": (1, 12)}
    feeds = make_feeds(declared, 4, spec)
    assert feeds["input_ids"].shape == (4, 12) and feeds["input_ids"].dtype == np.int64
    assert feeds["attention_mask"].shape == (4, 12) and (feeds["attention_mask"] == 1).all()
    assert set(np.unique(feeds["input_ids"])) <= {0, 1}  # valid token ids for any vocabulary


def test_seq_len_fills_other_dynamic_axes(encoder):
    assert resolve_shapes(_declared(encoder), 2, InputSpec(seq_len=5))["attention_mask"] == (2, 5)


def test_unresolved_dynamic_axis_is_an_error_naming_it(encoder):
    with pytest.raises(BadInput, match=r"input_ids.*axis 1.*sequence.*--shape input_ids=1xN.*--seq-len"):
        resolve_shapes(_declared(encoder), 1, InputSpec())


def test_shape_must_agree_with_fixed_axes(tmp_path):
    path = export_mlp(tmp_path / "m.onnx", 8)
    with pytest.raises(BadInput, match="axis 1 is fixed at 64"):
        resolve_shapes(_declared(path), None, InputSpec(shapes={"input": (1, 32)}))
    with pytest.raises(BadInput, match="3 dims given"):
        resolve_shapes(_declared(path), None, InputSpec(shapes={"input": (1, 64, 1)}))


def test_float_inputs_follow_declared_type_and_batch(mlps):
    feeds = make_feeds(_declared(mlps[0]), 8, InputSpec())
    assert feeds["input"].shape == (8, 64) and feeds["input"].dtype == np.float32


def test_npz_inputs_are_used_and_tiled_to_the_batch(encoder, tmp_path):
    ids = np.arange(6, dtype=np.int64).reshape(2, 3)
    np.savez(tmp_path / "in.npz", input_ids=ids, attention_mask=np.ones((2, 3), dtype=np.int32))
    spec = InputSpec(npz=tmp_path / "in.npz")
    feeds = make_feeds(_declared(encoder), None, spec)
    assert (feeds["input_ids"] == ids).all() and feeds["attention_mask"].dtype == np.int64  # cast to declared
    assert make_feeds(_declared(encoder), 5, spec)["input_ids"].shape == (5, 3)
    np.savez(tmp_path / "short.npz", input_ids=ids)
    with pytest.raises(BadInput, match="no array for input.*attention_mask"):
        make_feeds(_declared(encoder), None, InputSpec(npz=tmp_path / "short.npz"))
    np.savez(tmp_path / "float.npz", input_ids=ids.astype(np.float32), attention_mask=ids)
    with pytest.raises(BadInput, match="float32, the model wants tensor\\(int64\\)"):
        make_feeds(_declared(encoder), None, InputSpec(npz=tmp_path / "float.npz"))


@pytest.mark.parametrize("text", ["input_ids", "input_ids=", "input_ids=1xa", "=1x2", "x=0x3"])
def test_bad_shape_text(text):
    with pytest.raises(BadInput, match="--shape"):
        parse_shape(text)


def test_parse_shape_and_batches():
    assert parse_shape("input_ids=1x128") == ("input_ids", (1, 128))
    assert parse_batches("1,8,32") == [1, 8, 32]
    with pytest.raises(BadInput):
        parse_batches("1,0")


# -- statistics ------------------------------------------------------------------------------------------


def test_summarize_known_samples():
    s = bench_stats.summarize(list(range(1, 101)), batch=4)
    assert s["p50"] == pytest.approx(50.5)
    assert s["p90"] == pytest.approx(90.1)
    assert s["p99"] == pytest.approx(99.01)
    assert s["mean"] == pytest.approx(50.5)
    assert s["std"] == pytest.approx(np.std(np.arange(1, 101), ddof=1))
    assert s["min"] == 1 and s["n"] == 100
    assert s["throughput"] == pytest.approx(4 * 1000 / 50.5)


def test_paired_ratio_exact_and_noisy():
    base = np.array([2.0, 4.0, 3.0, 5.0, 2.5])
    exact = bench_stats.paired_ratio(base, base / 2)
    assert exact["estimate"] == pytest.approx(2.0)
    assert exact["low"] == pytest.approx(2.0) and exact["high"] == pytest.approx(2.0)
    rng = np.random.default_rng(1)
    base = rng.uniform(1, 3, 200)
    noisy = bench_stats.paired_ratio(base, base / 1.5 * rng.lognormal(0, 0.05, 200))
    assert noisy["low"] < 1.5 < noisy["high"]
    assert noisy["high"] - noisy["low"] < 0.05
    assert noisy["confidence"] == 0.95
    with pytest.raises(ValueError):
        bench_stats.paired_ratio([1.0, 2.0], [1.0])


def test_paired_ratio_resists_a_disturbed_round():
    base = np.full(21, 10.0)
    model = np.full(21, 5.0)
    model[3] = 50.0  # one round hit by another process
    assert bench_stats.paired_ratio(base, model)["estimate"] == pytest.approx(2.0)


def test_unpaired_change():
    rng = np.random.default_rng(0)
    before = rng.normal(10, 0.1, 50)
    change = bench_stats.unpaired_change(before, before * 1.2)
    assert change["estimate"] == pytest.approx(0.2, abs=1e-9)
    assert change["low"] > 0.15 and change["high"] < 0.25


def test_noise_flags_and_percentages():
    assert not bench_stats.is_noisy({"estimate": 2.0, "low": 1.95, "high": 2.05})
    assert bench_stats.is_noisy({"estimate": 2.0, "low": 1.7, "high": 2.3})
    assert bench_stats.is_noisy({"estimate": 2.0, "low": 1.99, "high": 2.01}, control={"estimate": 1.08})
    assert bench_stats.parse_percent("5%") == pytest.approx(0.05)
    assert bench_stats.parse_percent("0.05") == pytest.approx(0.05)
    with pytest.raises(ValueError):
        bench_stats.parse_percent("5")


def test_keep_rounds_drops_contended_or_falls_back():
    assert bench_stats.keep_rounds([True, False, True, True, True, True, True], 6) == ([0, 2, 3, 4, 5, 6], False)
    kept, contended = bench_stats.keep_rounds([False] * 8 + [True] * 2, 20)
    assert kept == list(range(10)) and contended


def test_rounds_kept_prefer_the_record_then_each_other_then_clean_ones():
    clean = [True] * 8 + [False] * 2
    model = [1.0] * 10
    at_record = [0.1] * 4 + [0.2] * 6  # the canary at its record in rounds 0-3, then 2x slower
    kept, contended = bench_stats.rounds_to_keep(clean, [model, at_record], [None, 0.1], wanted=4)
    assert kept == [0, 1, 2, 3] and not contended
    kept, contended = bench_stats.rounds_to_keep(clean, [model, [0.2] * 10], [None, 0.1], wanted=4)
    assert kept == list(range(8)) and not contended  # slow throughout the wait: rounds compared with each other
    scattered = [1.0, 2.0] * 5  # medians of few-run blocks scatter past any margin: clean rounds still count
    kept, contended = bench_stats.rounds_to_keep(clean, [scattered, [0.1] * 10], [None, 0.1], wanted=8)
    assert kept == list(range(8)) and not contended
    kept, contended = bench_stats.rounds_to_keep([True] + [False] * 9, [model, model], [None, None], wanted=20)
    assert kept == list(range(10)) and contended  # too few clean rounds: everything, marked contended


def test_foreign_load_is_machine_busy_minus_own():
    start = bench_stats.CpuSample(wall=0.0, system_busy=10.0, own=1.0)
    end = bench_stats.CpuSample(wall=0.5, system_busy=11.5, own=1.5)  # 1.5 s busy, 0.5 s ours, in 0.5 s
    assert bench_stats.foreign_load(start, end) == pytest.approx(2.0)
    assert bench_stats.foreign_load(start, bench_stats.CpuSample(0.5, None, 1.5)) is None


def test_cpu_sample_reads_this_machine():
    sample = bench_stats.cpu_sample()
    assert sample.own > 0
    if Path("/proc/stat").exists():
        assert sample.system_busy and sample.system_busy > 0


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
def test_wait_clock_reads_our_threads():
    clock = bench_system.WaitClock(bench_system.thread_ids())
    try:
        if clock.available:
            assert clock.ns() >= 0
    finally:
        clock.close()


def test_slow_rounds_flag_a_spell_of_slow_machine_but_not_a_run_slow_throughout():
    fast, slow = [1.0, 1.02, 0.99, 1.01] * 5, [1.5, 1.55, 1.52, 1.49, 1.5]
    base = fast[:10] + slow + fast[10:]
    model = [m / 2.7 for m in fast[:10]] + [m / 2.1 for m in slow] + [m / 2.7 for m in fast[10:]]
    flags = bench_stats.slow_rounds([base, model])
    assert flags == [False] * 10 + [True] * 5 + [False] * 10
    assert bench_stats.slow_rounds([slow, slow]) == [False] * 5  # compared with itself: nothing to drop
    assert bench_stats.slow_rounds([[1.0] * 9 + [1.2]]) == [False] * 9 + [True]
    assert bench_stats.slow_rounds([[]]) == []
    # against a record: more than 10% above it is slow, even when every round is alike
    assert bench_stats.slow_rounds([[1.0] * 5, [0.112] * 5], records=[None, 0.1]) == [True] * 5
    assert bench_stats.slow_rounds([[1.0] * 5, [0.108] * 5], records=[None, 0.1]) == [False] * 5


# -- the harness -----------------------------------------------------------------------------------------


def test_run_document_matches_schema(encoder):
    jsonschema = pytest.importorskip("jsonschema")
    s = bench.Settings(**QUICK)
    doc = bench.run([encoder, encoder], [1, 2], InputSpec(shapes={"input_ids": (1, 16)}), s)
    jsonschema.validate(doc, json.loads(SCHEMA.read_text()))
    assert [r["batch"] for r in doc["results"]] == [1, 2]
    assert doc["results"][1]["models"][0]["input_shapes"] == {"input_ids": [2, 16], "attention_mask": [2, 16]}
    assert [m["role"] for m in doc["models"]] == ["baseline", "model", "control"]
    for ratio in doc["ratios"]:
        assert ratio["provider"] == "cpu" and ratio["speedup"] > 0
        assert ratio["interval"]["low"] <= ratio["speedup"] <= ratio["interval"]["high"]
    assert len(doc["controls"]) == 2
    assert all(m["session_create_ms"] > 0 for m in doc["models"])


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
def test_sessions_share_one_thread_pool_in_a_worker_process(mlps):
    s = bench.Settings(threads=2, **QUICK)
    one = bench.run([mlps[0]], [4], s=bench.Settings(threads=2, control=False, **QUICK))
    three = bench.run([mlps[0], mlps[1]], [4], s=s)  # three sessions with the control
    assert len(three["models"]) == 3
    # a pool per session would add a worker thread for each session; the shared pool adds none
    assert three["environment"]["process_threads"] == one["environment"]["process_threads"]
    assert one["environment"]["process_threads"] >= 2  # the caller and the pool's worker


def test_slow_model_gets_a_speedup_below_one(mlps):
    doc = bench.run([mlps[0], mlps[1]], [8], s=bench.Settings(control=False, **QUICK))
    assert doc["ratios"][0]["speedup"] < 0.5  # ~100x slower; gross on purpose, the machine may be busy
    assert doc["controls"] == []


def test_time_models_keeps_the_prune_report_shape(mlps):
    stats = bench.time_models(list(mlps), 4, warmup=1, iterations=3, max_wait_s=0)
    assert len(stats) == 2
    assert {"p50", "p90", "p99", "mean", "std", "throughput"} <= set(stats[0])


def test_missing_file_and_unknown_shape_name(mlps, tmp_path):
    with pytest.raises(BadInput, match="no such model file"):
        bench.run([tmp_path / "nope.onnx"], [1])
    with pytest.raises(BadInput, match="--shape names no input 'inputs'"):
        bench.run([mlps[0]], [1], InputSpec(shapes={"inputs": (1, 64)}), bench.Settings(**QUICK))


@pytest.mark.skipif(HAS_CUDA, reason="CUDA is available here")
def test_unavailable_provider_lists_available_ones():
    with pytest.raises(BadInput, match=r"--provider cuda is not available.*available: cpu"):
        bench.check_provider("cuda")


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="needs onnxruntime-gpu and an NVIDIA GPU")
@pytest.mark.parametrize("copies", [False, True])
def test_cuda_io_binding(mlps, copies):
    s = bench.Settings(provider="cuda", include_copies=copies, **QUICK)
    doc = bench.run(list(mlps), [8], s=s)
    assert doc["settings"]["io_binding"] is (not copies)
    assert doc["models"][0]["providers"][0] == "CUDAExecutionProvider"
    assert doc["ratios"][0]["provider"] == "cuda"
