"""The benchmark's canary: a fixed network, its best time per machine in a small cache, and the slow-run flag."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest

from sparsecli import bench, bench_canary
from sparsecli.bench_session import Settings
from tests.fixtures.bench_models import export_mlp

ENV = {"cpu": "Test CPU", "usable_cpus": 2, "onnxruntime": "1.0"}


def test_canary_network_runs_and_is_deterministic():
    sess = ort.InferenceSession(bench_canary.model(), providers=["CPUExecutionProvider"])
    (y,) = sess.run(None, bench_canary.feeds())
    assert y.shape == (1, bench_canary.CHANNELS, 1, 1)
    assert np.isfinite(y).all() and (y >= 0).all()  # the average of ReLU outputs
    assert bench_canary.model() == bench_canary.model()  # the same workload on every run and machine


def test_key_names_what_the_canary_time_depends_on():
    one = bench_canary.key(ENV, Settings(threads=1))
    assert one != bench_canary.key({**ENV, "cpu_id": "AuthenticAMD 25 17 1"}, Settings(threads=1))
    assert "Test CPU" in one and "2 cpus" in one and "onnxruntime 1.0" in one
    assert one != bench_canary.key(ENV, Settings(threads=2))
    assert one != bench_canary.key({**ENV, "cpu": "Other CPU"}, Settings(threads=1))


def test_best_is_the_fastest_recent_run_and_the_file_keeps_the_newest(tmp_path, monkeypatch):
    monkeypatch.setenv("SPARSECLI_CACHE_DIR", str(tmp_path))
    assert bench_canary.best("k") is None
    now = 1e9
    bench_canary.remember("k", 0.05, now=now - 40 * 24 * 3600)  # older than a month: ignored
    bench_canary.remember("k", 0.20, now=now - 10)
    bench_canary.remember("k", 0.15, now=now)
    bench_canary.remember("other", 0.01, now=now)
    assert bench_canary.best("k", now=now) == 0.15
    for i in range(bench_canary.KEEP_ENTRIES + 5):
        bench_canary.remember("k", 1.0 + i, now=now)
    assert len(json.loads(bench_canary.cache_file().read_text())["k"]) == bench_canary.KEEP_ENTRIES
    assert bench_canary.best("other", now=now) == 0.01


def test_unreadable_or_unwritable_cache_means_no_reference(tmp_path, monkeypatch):
    monkeypatch.setenv("SPARSECLI_CACHE_DIR", str(tmp_path))
    bench_canary.cache_file().write_text("{not json")
    assert bench_canary.best("k") is None
    entries = {"k": [[1, "fast"], "bad", [2e9, float("nan")], [2e9, 0.3], [True, 0.01]], "other": 5}
    bench_canary.cache_file().write_text(json.dumps(entries))
    assert bench_canary.best("k", now=2e9) == 0.3  # only well-formed entries count
    bench_canary.remember("other", 0.2, now=2e9)
    assert bench_canary.best("other", now=2e9) == 0.2
    blocked = tmp_path / "file"
    blocked.write_text("")
    monkeypatch.setenv("SPARSECLI_CACHE_DIR", str(blocked / "below-a-file"))
    bench_canary.remember("k", 0.1)  # cannot be written: no error, no reference
    assert bench_canary.best("k") is None


def test_cache_location_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.delenv("SPARSECLI_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert bench_canary.cache_file() == tmp_path / "sparsecli" / bench_canary.FILE_NAME


def test_judge_flags_a_run_slower_than_the_machine_s_best(monkeypatch, tmp_path):
    monkeypatch.setenv("SPARSECLI_CACHE_DIR", str(tmp_path))
    canary = bench_canary.Canary(run=lambda: None, key="k")
    first = canary.judge([0.10, 0.11, 0.12])
    assert first["best_ms"] is None and first["slowdown"] is None and not first["slow"]
    assert canary.judge([0.114, 0.115, 0.116])["slow"] is False  # 1.045x the best: within the margin
    slow = canary.judge([0.2, 0.2, 0.2])
    assert slow["best_ms"] == pytest.approx(0.11) and slow["slowdown"] == pytest.approx(0.2 / 0.11)
    assert slow["slow"] is True


def test_a_benchmark_on_a_machine_slower_than_its_record_waits_then_says_so(tmp_path):
    fast, slow = export_mlp(tmp_path / "fast.onnx", 16), export_mlp(tmp_path / "slow.onnx", 256)
    s = Settings(warmup=1, iterations=4, max_wait_s=0.3)
    first = bench.run([fast, slow], [1], s=s)
    machine = first["results"][0]["machine"]
    assert machine["best_ms"] is None and machine["canary_ms"] > 0 and not machine["slow"]
    assert first["results"][0]["rounds"]["waited_s"] == 0.0  # no record, nothing to wait for
    assert not any("slower than its best" in w for w in first["warnings"])
    # a record 100x faster than this machine can run the canary: the run waits out its budget for the machine
    # to recover, then must be reported as slow throughout
    bench_canary.remember(machine["key"], machine["canary_ms"] / 100)
    second = bench.run([fast, slow], [1], s=s)
    result = second["results"][0]
    assert 0.3 <= result["rounds"]["waited_s"] < 1.0
    assert result["machine"]["slow"] and result["machine"]["slowdown"] > 50
    assert result["rounds"]["kept"] > 0 and not result["rounds"]["contended"]
    assert all(r["noisy"] for r in second["ratios"])
    assert any("slower than its best recorded speed" in w and "after waiting" in w for w in second["warnings"])


def test_judge_keeps_the_faster_of_record_and_run_for_the_next_batch(monkeypatch, tmp_path):
    monkeypatch.setenv("SPARSECLI_CACHE_DIR", str(tmp_path))
    canary = bench_canary.Canary(run=lambda: None, key="k", best_ms=0.2)
    assert canary.judge([0.1])["slowdown"] == pytest.approx(0.5)
    assert canary.best_ms == pytest.approx(0.1)  # the next batch waits for this speed
    assert bench_canary.best("k") == pytest.approx(0.1)
