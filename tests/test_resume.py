"""Resume: an interrupted prune continues from checkpoint.pt and ends where an uninterrupted run ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import torch

from tests.conftest import CONFIGS, ROOT, overrides

SETTINGS = [
    "model.pretrain.epochs=2",
    "model.kwargs={width: 32}",
    "finetune.epochs=12",
    "passes.0.schedule.end_epoch=6",
    "benchmark.warmup=1",
    "benchmark.iterations=3",
    "benchmark.max_wait_s=0",
    "gates={}",
]


def _args(output) -> list[str]:
    return ["prune", str(CONFIGS / "quickstart.yaml"), *overrides(*SETTINGS, f"output={output}"), "--json", "-q"]


def _checkpoint_epoch(path) -> int:
    try:
        return int(torch.load(path, weights_only=True)["epoch"])
    except Exception:  # not there yet, or being replaced
        return -1


def test_signal_mid_finetuning_then_resume_matches_uninterrupted(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "sparsecli"]
    straight = subprocess.run([*command, *_args(tmp_path / "straight")], capture_output=True, text=True, env=env)
    assert straight.returncode == 0, straight.stderr

    run_dir = tmp_path / "interrupted"
    process = subprocess.Popen([*command, *_args(run_dir)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 120
    while _checkpoint_epoch(run_dir / "checkpoint.pt") < 2 and time.monotonic() < deadline:
        assert process.poll() is None, "run finished before it could be interrupted"
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=180)
    assert process.returncode == 3, err
    assert b"--resume" in err and not (run_dir / "report.json").exists()
    assert 2 <= _checkpoint_epoch(run_dir / "checkpoint.pt") < 12

    refused = subprocess.run([*command, *_args(run_dir)], capture_output=True, text=True, env=env)
    assert refused.returncode == 2 and "interrupted run" in refused.stderr

    resumed = subprocess.run([*command, *_args(run_dir), "--resume"], capture_output=True, text=True, env=env)
    assert resumed.returncode == 0, resumed.stderr
    a, b = json.loads(straight.stdout), json.loads(resumed.stdout)
    assert abs(a["sparsity"]["overall"] - b["sparsity"]["overall"]) < 1e-6
    assert abs(a["accuracy"]["compressed"] - b["accuracy"]["compressed"]) * 100 <= 0.5


def test_resume_refuses_a_checkpoint_of_another_recipe(cli, tmp_path):
    run_dir = tmp_path / "run"
    assert cli(*_args(run_dir)[:-1])[0] == 0  # finished run
    (run_dir / "report.json").unlink()
    code, _, err = cli(*_args(run_dir)[:-1], "--resume")
    assert code == 2 and "not a sparsecli fine-tuning checkpoint" in err
