"""``crossbench add-breakdowns``: records written before breakdowns gain exactly the breakdowns their
run would have recorded, nothing they report changes, a refit that differs changes nothing, and bad
input is one line before any work."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_verify_records import _cli, _one_line_error

from crossbench.files import file_sha256
from crossbench.records.schema import record_seal


def _run(root: Path, *extra: str) -> Path:
    out = root / "out"
    res = _cli("run", "--model", "popularity", "--model", "mf", "--seeds", "0", "--threads", "1", "-q", "--output", str(out), *extra)
    assert res.exit_code == 0, res.output
    return out


@pytest.fixture(scope="module")
def full(tmp_path_factory) -> Path:
    return _run(tmp_path_factory.mktemp("full"))


@pytest.fixture(scope="module")
def sampled(tmp_path_factory) -> Path:
    return _run(tmp_path_factory.mktemp("sampled"), "--sampled", "50")


def _records(folder: Path) -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted((folder / "runs").glob("*.json"))}


def _as_before_breakdowns(source: Path, target: Path, change=None) -> dict[str, dict[str, Any]]:
    """A copy of ``source`` whose records look as records written before breakdowns existed (resealed);
    return the original records."""
    shutil.copytree(source, target)
    (target / ".crossbench.lock").unlink(missing_ok=True)
    originals = _records(source)
    for name, rec in originals.items():
        old = json.loads(json.dumps(rec))
        del old["evaluation"]["breakdowns"]
        if change is not None:
            change(name, old)
        old["seal"] = record_seal(old)
        (target / "runs" / name).write_text(json.dumps(old, indent=2, sort_keys=True) + "\n")
    return originals


@pytest.mark.parametrize("kind, how", [("full", "bit-identical refit"), ("sampled", "per-user values")])
def test_breakdowns_are_those_the_run_recorded(kind: str, how: str, request, tmp_path: Path):
    source = request.getfixturevalue(kind)
    folder = tmp_path / "old"
    originals = _as_before_breakdowns(source, folder)
    stripped = {n: (r["seal"], r) for n, r in _records(folder).items()}
    out = _cli("add-breakdowns", str(folder))
    assert out.exit_code == 0, out.output
    assert "2 record(s) without breakdowns" in out.output
    for name, rec in _records(folder).items():
        orig = originals[name]
        assert rec["evaluation"]["breakdowns"] == orig["evaluation"]["breakdowns"]  # what the run itself recorded
        assert rec["evaluation"]["breakdowns"]["source_history"]["groups"]
        assert ("item_popularity" in rec["evaluation"]["breakdowns"]) == (kind == "full")
        added = rec["evaluation"].pop("breakdowns_added")
        assert added["how"] == how and added["seal_before"] == stripped[name][0]
        assert rec["seal"] != stripped[name][0]
        # nothing else changed: the metrics, the per-user file, every other field
        for r in (rec, orig):
            r.pop("seal")
        assert rec == orig
    verified = _cli("verify", str(folder))
    assert verified.exit_code == 0 and f"2 record(s) gained their breakdowns after their run (crossbench add-breakdowns; 2 from {how})" in verified.output
    assert "| not recorded" not in (folder / "leaderboard.md").read_text()  # every model's cells are filled
    before = {p.name: p.read_bytes() for p in (folder / "runs").glob("*.json")}
    again = _cli("add-breakdowns", str(folder))
    assert again.exit_code == 0 and "0 record(s) without breakdowns" in again.output
    assert {p.name: p.read_bytes() for p in (folder / "runs").glob("*.json")} == before


def test_one_model_at_a_time(full: Path, tmp_path: Path):
    folder = tmp_path / "old"
    _as_before_breakdowns(full, folder)
    out = _cli("add-breakdowns", str(folder), "--model", "popularity")
    assert out.exit_code == 0, out.output
    recs = _records(folder)
    assert recs["movies-popularity-seed0.json"]["evaluation"]["breakdowns"]
    assert "breakdowns" not in recs["movies-mf-seed0.json"]["evaluation"]
    assert _cli("verify", str(folder)).exit_code == 0  # the table was rebuilt with the one model's breakdowns


def test_a_refit_that_differs_leaves_the_record_as_it_was(full: Path, tmp_path: Path):
    folder = tmp_path / "old"
    _as_before_breakdowns(full, folder)
    record = folder / "runs" / "movies-mf-seed0.json"
    users = folder / "runs" / "movies-mf-seed0.users.npz"
    with np.load(users) as z:  # a consistent forgery: per-user values, their sha256, the mean and the seal
        arrays = {k: z[k] for k in z.files}
    arrays["ndcg@10"] = arrays["ndcg@10"].copy()
    arrays["ndcg@10"][:3] = 1.0 - arrays["ndcg@10"][:3]
    np.savez_compressed(users, **arrays)
    rec = json.loads(record.read_text())
    rec["evaluation"]["metrics"]["ndcg@10"] = float(np.nanmean(arrays["ndcg@10"]))
    rec["evaluation"]["per_user"]["sha256"] = file_sha256(users)
    rec["seal"] = record_seal(rec)
    record.write_text(json.dumps(rec))
    before = record.read_bytes()
    out = _cli("add-breakdowns", str(folder))
    assert out.exit_code == 3, out.output
    assert "differs: movies-mf-seed0.json: ndcg@10:" in out.output
    assert "differs: movies-mf-seed0.json: per-user ndcg@10: 3 of" in out.output
    assert "1 refit(s) differed" in out.output
    assert record.read_bytes() == before
    assert _records(folder)["movies-popularity-seed0.json"]["evaluation"]["breakdowns"]  # the other record gained its own


def test_without_refit_a_full_ranking_row_gets_its_source_history_alone(full: Path, tmp_path: Path):
    folder = tmp_path / "old"
    originals = _as_before_breakdowns(full, folder)
    out = _cli("add-breakdowns", str(folder), "--no-refit")
    assert out.exit_code == 0, out.output
    assert "2 from their per-user values, 0 by a bit-identical refit" in out.output
    for name, rec in _records(folder).items():
        assert rec["evaluation"]["breakdowns"] == {"source_history": originals[name]["evaluation"]["breakdowns"]["source_history"]}
        assert rec["evaluation"]["breakdowns_added"]["how"] == "per-user values, without refit (source history only)"
    assert _cli("verify", str(folder)).exit_code == 0
    table = (folder / "leaderboard.md").read_text()
    assert "By item popularity: not recorded for these runs." in table


def test_bad_input_is_one_line_before_any_work(full: Path, tmp_path: Path):
    assert "not a results folder" in _one_line_error(_cli("add-breakdowns", str(tmp_path)))
    folder = tmp_path / "old"

    def other_torch(name: str, rec: dict[str, Any]) -> None:
        if name == "movies-popularity-seed0.json":
            rec["environment"]["torch"] = "0.0.1"

    _as_before_breakdowns(full, folder, change=other_torch)
    before = {p.name: p.read_bytes() for p in (folder / "runs").iterdir()}
    assert "no run of that model" in _one_line_error(_cli("add-breakdowns", str(folder), "--model", "nope"))
    line = _one_line_error(_cli("add-breakdowns", str(folder)))
    assert "movies-popularity-seed0.json" in line and "torch 0.0.1" in line
    assert {p.name: p.read_bytes() for p in (folder / "runs").iterdir()} == before
