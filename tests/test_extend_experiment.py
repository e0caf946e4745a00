"""Adding a model to a finished experiment keeps its runs; any other change is still refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from crossbench.cli import CliState, cli

SMALL = ["--dataset-param", "n_users=200", "--dataset-param", "n_items=40", "--seeds", "0,1", "--threads", "1", "-q"]
MF = ["--model-param", "mf.epochs=2", "--model-param", "mf.dim=8"]


def _invoke(args: list[str]):  # noqa: ANN202
    return CliRunner().invoke(cli, args, obj=CliState())


def _stamps(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted((folder / "runs").glob("*.json"))}


@pytest.mark.slow  # three runs and a reproduce
def test_added_models_run_alone_and_the_earlier_runs_stay(tmp_path):
    out = tmp_path / "board"
    first = _invoke(["run", "--model", "popularity", "--model", "mf", *MF, *SMALL, "--output", str(out)])
    assert first.exit_code == 0, first.output
    before = _stamps(out)
    assert len(before) == 4
    old_fp = json.loads((out / "experiment.json").read_text())["fingerprint"]

    added = _invoke(["run", "--model", "popularity", "--model", "mf", "--model", "itemknn", *MF, *SMALL, "--output", str(out)])
    assert added.exit_code == 0, added.output
    after = _stamps(out)
    assert {k: after[k] for k in before} == before  # the four earlier records were not rewritten
    assert sorted(set(after) - set(before)) == ["movies-itemknn-seed0.json", "movies-itemknn-seed1.json"]
    manifest = json.loads((out / "experiment.json").read_text())
    assert manifest["fingerprint"] != old_fp
    assert [(e["fingerprint"], e["models"]) for e in manifest["extends"]] == [(old_fp, ["popularity", "mf"])]
    assert 'name = "itemknn"' in (out / "runs" / "experiment.toml").read_text()  # reproduce reads the extended experiment
    table = (out / "leaderboard.md").read_text()
    assert all(f"| {m} " in table for m in ("popularity", "mf", "itemknn"))

    verified = _invoke(["verify", str(out), "--no-data"])
    assert verified.exit_code == 0, verified.output
    assert "1 earlier form(s)" in verified.output

    again = _invoke(["run", "--model", "popularity", "--model", "mf", "--model", "itemknn", *MF, *SMALL, "--output", str(out)])
    assert again.exit_code == 0, again.output
    assert _stamps(out) == after  # nothing to run: every record kept

    record = out / "runs" / "movies-mf-seed1.json"  # a row of the earlier form reproduces from the extended experiment
    reproduced = _invoke(["reproduce", str(record)])
    assert reproduced.exit_code == 0, reproduced.output


def test_changes_other_than_added_models_are_refused(tmp_path):
    out = tmp_path / "board"
    assert _invoke(["run", "--model", "popularity", "--model", "mf", *MF, *SMALL, "--output", str(out)]).exit_code == 0
    cases = {
        "a model's setting changed": ["--model", "popularity", "--model", "mf", "--model-param", "mf.epochs=3",
                                      "--model-param", "mf.dim=8", "--model", "itemknn", *SMALL],
        "a model removed": ["--model", "popularity", *SMALL],
        "seeds changed": ["--model", "popularity", "--model", "mf", "--model", "itemknn", *MF,
                          *[a if a != "0,1" else "0,2" for a in SMALL]],
    }
    for what, args in cases.items():
        refused = _invoke(["run", *args, "--output", str(out)])
        assert refused.exit_code == 2, (what, refused.output)
        assert "holds the results of another experiment" in refused.output and "only adding models keeps them" in refused.output, what
    assert len(_stamps(out)) == 4


def test_an_edited_earlier_form_fails_verify(tmp_path):
    out = tmp_path / "board"
    assert _invoke(["run", "--model", "popularity", *SMALL, "--output", str(out)]).exit_code == 0
    assert _invoke(["run", "--model", "popularity", "--model", "itemknn", *SMALL, "--output", str(out)]).exit_code == 0
    path = out / "experiment.json"
    manifest = json.loads(path.read_text())
    manifest["extends"][0]["experiment"]["seeds"] = [0, 1, 2]  # claim the earlier runs were of another experiment
    path.write_text(json.dumps(manifest))
    broken = _invoke(["verify", str(out), "--no-data"])
    assert broken.exit_code == 2
    assert "earlier form 1" in broken.output and "the manifest was edited" in broken.output
    manifest["extends"][0]["models"] = ["popularity", "itemknn"]  # an earlier form claiming a model it did not run
    manifest["extends"][0]["experiment"]["seeds"] = [0, 1]
    path.write_text(json.dumps(manifest))
    assert _invoke(["verify", str(out), "--no-data"]).exit_code == 2
