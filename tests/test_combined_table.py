"""Tables built from several results folders verify like a results folder (sources.json); reproduce reads protocol defaults."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from crossbench.cli import CliState, cli

SMALL = ["--dataset-param", "n_users=200", "--dataset-param", "n_items=40", "--threads", "1", "-q"]


def _invoke(args: list[str]):  # noqa: ANN202
    return CliRunner().invoke(cli, args, obj=CliState())


def test_a_combined_table_verifies_against_its_sources(tmp_path: Path) -> None:
    a, b, table = tmp_path / "full", tmp_path / "sampled", tmp_path / "both"
    assert _invoke(["run", "--model", "popularity", "--model", "itemknn", "--seeds", "0", *SMALL, "--output", str(a)]).exit_code == 0
    ran = _invoke(["run", "--model", "popularity", "--model", "itemknn", "--seeds", "0", "--sampled", "20", *SMALL, "--output", str(b)])
    assert ran.exit_code == 0, ran.output
    built = _invoke(["leaderboard", str(a), str(b), "--output", str(table / "leaderboard.md")])
    assert built.exit_code == 0, built.output
    assert json.loads((table / "sources.json").read_text()) == {"sources": ["../full", "../sampled"]}
    assert "## Agreement" in (table / "leaderboard.md").read_text()  # a sampled and a full-ranking table of one target

    ok = _invoke(["verify", str(table), "--no-data"])
    assert ok.exit_code == 0, ok.output
    assert "4 run record(s) of 2 results folders" in ok.output and "table, CSV, JSON and plot file(s) are current" in ok.output

    md = table / "leaderboard.md"
    md.write_text(md.read_text().replace("itemknn", "itemkNN", 1))  # an edited table
    edited = _invoke(["verify", str(table), "--no-data"])
    assert edited.exit_code == 2 and "out of date with its run records" in edited.output

    (table / "sources.json").write_text(json.dumps({"sources": ["../full", "../gone"]}))
    missing = _invoke(["verify", str(table), "--no-data"])
    assert missing.exit_code == 2 and "gone, which is not a results folder" in missing.output


def test_a_results_folder_table_gets_no_sources(tmp_path: Path) -> None:
    a = tmp_path / "r"
    assert _invoke(["run", "--model", "popularity", "--seeds", "0", *SMALL, "--output", str(a)]).exit_code == 0
    assert _invoke(["leaderboard", str(a), "--output", str(a / "leaderboard.md")]).exit_code == 0
    assert not (a / "sources.json").exists()
    assert _invoke(["verify", str(a), "--no-data"]).exit_code == 0


def test_reproduce_accepts_a_record_that_names_its_protocols_defaults(tmp_path: Path) -> None:
    # new-items records its `candidates` default although the experiment leaves it out
    out = tmp_path / "ni"
    ran = _invoke(["run", "--model", "popularity", "--protocol", "new-items", "--seeds", "0", *SMALL, "--output", str(out)])
    assert ran.exit_code == 0, ran.output
    (record,) = (out / "runs").glob("*.json")
    assert json.loads(record.read_text())["protocol"]["params"]["candidates"] == "new"
    again = _invoke(["reproduce", str(record)])
    assert again.exit_code == 0, again.output
    assert "bit-identical" in again.output
