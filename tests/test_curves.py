"""Validation-curve plots beside the records: written by ``crossbench run`` and ``crossbench
leaderboard --output`` for runs that recorded a curve, absent for runs that did not."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner

from crossbench.cli import CliState, cli
from crossbench.report.curves import curve_plots, largest_drop, run_curve
from crossbench.report.exports import PLOT_KEY, png_text

SMALL = ["--dataset-param", "n_users=300", "--dataset-param", "n_items=60", "--seeds", "0", "-q", "--threads", "1"]


def invoke(args: list[str]):
    return CliRunner().invoke(cli, args, obj=CliState())


def test_largest_drop_by_hand() -> None:
    curve = [0.5, 0.4, 0.44, 0.33]  # falls 0.2 (1->2), rises (2->3), falls 0.25 (3->4)
    fall, epoch = largest_drop(curve)
    assert math.isclose(fall, 0.25) and epoch == 4
    assert largest_drop(curve, after=2) == pytest.approx((0.25, 4))
    assert largest_drop([0.1, 0.2, 0.3]) == (0.0, 2)  # never falls
    assert largest_drop(curve, after=3) is None  # one epoch after warm-up: no pair
    assert largest_drop([0.3, math.nan, 0.2]) is None  # a missing value breaks both pairs


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("curves") / "r"
    res = invoke(["run", "--model", "sasrec", "--model", "popularity", "--model-param", "sasrec.epochs=3",
                  "--model-param", "sasrec.patience=3", "--model-param", "sasrec.dim=8", *SMALL, "--output", str(out)])
    assert res.exit_code == 0, res.output
    return out


def test_run_writes_a_curve_for_the_trained_model_only(results: Path) -> None:
    (rec_file,) = (results / "runs").glob("*sasrec*.json")
    fit = json.loads(rec_file.read_text())["fit"]
    assert len(fit["history"]) == 3 and len(fit["train_loss"]) == 3
    # softmax cross-entropy over 60 items starts near log(60) = 4.09 and falls as the model learns
    assert 3.0 < fit["train_loss"][0] < 4.5 and fit["train_loss"][-1] < fit["train_loss"][0]
    curves = sorted(p.name for p in (results / "plots").glob("*-curves.png"))
    assert curves == ["synthetic-cold-start-movies-sasrec-curves.png"]
    png = (results / "plots" / curves[0]).read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 5000
    expected = curve_plots([json.loads(rec_file.read_text())])
    (art,) = expected.values()
    assert png_text(png)[PLOT_KEY] == art.data_sha256
    # the table's own plots are still there, and popularity has no curve file
    assert list((results / "plots").glob("*-at-k.png"))
    assert not list((results / "plots").glob("*popularity-curves*"))


def test_leaderboard_output_writes_curves_and_renders_records_without_any(results: Path, tmp_path: Path) -> None:
    out = tmp_path / "board" / "table.md"
    res = invoke(["leaderboard", str(results), "--output", str(out)])
    assert res.exit_code == 0, res.output
    assert [p.name for p in (tmp_path / "board" / "table-plots").glob("*-curves.png")] == [
        "synthetic-cold-start-movies-sasrec-curves.png"]
    # records without a curve (popularity alone) render a table and no curve plot
    (pop,) = (results / "runs").glob("*popularity*.json")
    solo = tmp_path / "solo"
    res = invoke(["leaderboard", str(pop), "--output", str(solo / "leaderboard.md")])
    assert res.exit_code == 0, res.output
    assert "popularity" in (solo / "leaderboard.md").read_text()
    assert not list((solo / "plots").glob("*-curves.png"))


def test_records_without_training_loss_plot_the_validation_curve_alone() -> None:
    old = {"seed": 1, "model": {"label": "m"}, "dataset": {"name": "d", "fingerprint": "f"}, "protocol": {"name": "p", "target": "t"},
           "evaluation": {"mode": "full"},
           "fit": {"history": [0.1, 0.3, None], "valid_metric": "ndcg@10", "best_epoch": 2}}
    curve = run_curve(old)
    assert curve is not None and curve["train_loss"] == [] and curve["valid"][:2] == [0.1, 0.3] and math.isnan(curve["valid"][2])
    assert run_curve({**old, "fit": {"epochs": 0}}) is None
    (name,) = curve_plots([old], folder="x")
    assert name == "x/d-p-t-m-curves.png"
    data = {"title": "m: d, p, target t", "curves": [curve]}
    digest = hashlib.sha256(json.dumps(data, sort_keys=True, allow_nan=True).encode("utf-8")).hexdigest()
    assert curve_plots([old], folder="x")[name].data_sha256 == digest
