"""`sparsecli sweep`: grid axes from --set, one folder per point, failures recorded, reruns skip finished points."""

from __future__ import annotations

import json
import sys

import jsonschema
import pytest

from sparsecli import plots, schemas, sweep
from sparsecli.errors import BadInput
from tests.conftest import CONFIGS, FAST, overrides


@pytest.mark.parametrize(
    ("item", "axis"),
    [
        ("passes.0.target=0.5,0.7,0.9", [0.5, 0.7, 0.9]),
        ('passes.0.exclude=["*a*", "*b*"]', None),  # a YAML list is one value
        ("finetune.optimizer={name: sgd, lr: 0.1}", None),
        ("name='a,b'", None),
        ("passes.0.include=[a],[b, c]", [["a"], ["b", "c"]]),
    ],
)
def test_comma_lists_outside_brackets_make_axes(item, axis):
    if axis is None:
        with pytest.raises(BadInput, match="at least one"):
            sweep.grid([item])
        return
    axes, fixed = sweep.grid([item, "seed=1"])
    assert fixed == ["seed=1"]
    assert [p["overrides"][item.split("=")[0]] for p in sweep.points(axes)] == axis


def test_points_are_the_product_with_readable_unique_slugs():
    axes, _ = sweep.grid(["passes.0.target=0.5,0.9", "finetune.epochs=1,2", "model.pretrain.epochs=3"])
    assert [p["slug"] for p in sweep.points(axes)] == [
        "target-0.5_epochs-1",
        "target-0.5_epochs-2",
        "target-0.9_epochs-1",
        "target-0.9_epochs-2",
    ]
    clash, _ = sweep.grid(["finetune.epochs=1,2", "model.pretrain.epochs=3,4"])
    assert sweep.points(clash)[0]["slug"] == "finetune.epochs-1_model.pretrain.epochs-3"


def test_pareto_front():
    # (accuracy, cost): the third is dominated by the first, the fourth ties nothing and is cheapest
    assert sweep.pareto([(0.9, 10), (0.8, 5), (0.85, 12), (0.5, 1)]) == [True, True, False, True]


def test_plot_without_matplotlib_is_a_note(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # import now raises ImportError
    point = {"slug": "a", "pareto": {}, "figures": {"accuracy": 0.9, "latency_ms": 1.0, "size_gzip_bytes": 10}}
    point["figures"]["latency_at"] = {"provider": "cpu", "batch": 1}
    assert plots.tradeoff([point], tmp_path / "p.png") == (None, plots.MISSING)
    assert not (tmp_path / "p.png").exists()


def test_sweep_three_targets_plot_failed_point_and_rerun(cli, tmp_path):
    from matplotlib.image import imread

    folder = tmp_path / "sweep"
    args = overrides(*FAST, "passes.0.schedule.end_epoch=1", "passes.0.target=0.5,0.7,0.9,1.5")
    code, out, err = cli("sweep", CONFIGS / "quickstart.yaml", *args, "--output", folder, "--json")
    assert code == 3 and "1 of 4 sweep points failed: target-1.5" in err  # the bad point did not stop the rest
    doc = json.loads(out)
    jsonschema.validate(doc, schemas.load("sweep"))
    assert json.loads((folder / "sweep.json").read_text()) == doc
    status = {p["slug"]: p["status"] for p in doc["points"]}
    assert status == {"target-0.5": "ok", "target-0.7": "ok", "target-0.9": "ok", "target-1.5": "failed"}
    assert "passes[0].target" in doc["points"][3]["error"]
    sparsity = [p["figures"]["sparsity"] for p in doc["points"][:3]]
    assert sparsity == sorted(sparsity) and sparsity[0] > 0.4
    assert any(p["pareto"]["size_gzip_bytes"] for p in doc["points"][:3])

    png = folder / "sweep.png"
    assert doc["plot"] == str(png) and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    height, width = imread(png).shape[:2]
    assert width > 400 and height > 200

    # a killed sweep: one point's report is missing; the rerun runs that point only
    (folder / "target-0.7" / "report.json").unlink()
    kept = {s: (folder / s / "report.json").stat().st_mtime_ns for s in ("target-0.5", "target-0.9")}
    code, out, _ = cli("sweep", CONFIGS / "quickstart.yaml", *args, "--output", folder, "--json")
    assert code == 3
    again = {p["slug"]: p for p in json.loads(out)["points"]}
    assert {s: again[s]["reused"] for s in ("target-0.5", "target-0.7", "target-0.9")} == {
        "target-0.5": True,
        "target-0.7": False,
        "target-0.9": True,
    }
    assert {s: (folder / s / "report.json").stat().st_mtime_ns for s in kept} == kept
    assert (folder / "target-0.7" / "report.json").is_file()
    assert again["target-0.7"]["figures"]["sparsity"] == doc["points"][1]["figures"]["sparsity"]


def test_sweep_without_an_axis_is_bad_input(cli):
    code, _, err = cli("sweep", CONFIGS / "quickstart.yaml", "--set", "passes.0.target=0.5")
    assert code == 2 and "comma list" in err
