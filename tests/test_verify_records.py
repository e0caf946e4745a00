"""Verified records: schema, means recomputed from per-user files, fingerprints, exports, reproduce."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from crossbench.cli import CliState, cli
from crossbench.experiment.tomlfile import experiment_from_text, experiment_to_toml, load_experiment
from crossbench.files import file_sha256
from crossbench.records.schema import record_seal
from crossbench.report.exports import PLOT_KEY, png_text
from crossbench_basic import DEFAULT_EXPERIMENT

ROOT = Path(__file__).resolve().parents[1]
RECORD = "movies-mf-seed0.json"


def _cli(*args: str):
    return CliRunner().invoke(cli, list(args), obj=CliState())


def _one_line_error(out, code: int = 2) -> str:
    assert out.exit_code == code, out.output
    assert "Traceback" not in out.output
    lines = [line for line in out.output.splitlines() if line.startswith("crossbench: error:")]
    assert len(lines) == 1, out.output
    return lines[0]


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("verify") / "out"
    old = os.umask(0o027)
    try:
        res = _cli("run", "--model", "popularity", "--model", "mf", "--seeds", "0", "--threads", "1", "-q", "--output", str(out))
    finally:
        os.umask(old)
    assert res.exit_code == 0, res.output
    return out


@pytest.fixture()
def copy(folder: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(folder, target)
    (target / ".crossbench.lock").unlink(missing_ok=True)
    return target


def _edit(path: Path, change) -> None:
    """Change a record as a determined editor would: its seal recomputed too (the checks behind it must still refuse)."""
    rec = json.loads(path.read_text())
    change(rec)
    if "seal" in rec:
        rec["seal"] = record_seal(rec)
    path.write_text(json.dumps(rec))


def _flip_ndcg(runs: Path, n: int) -> tuple[Path, float]:
    """Replace the first ``n`` users' ndcg@10 by 1 - value in the record's per-user file; return it and the new mean."""
    users = runs / RECORD.replace(".json", ".users.npz")
    with np.load(users) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["ndcg@10"] = np.asarray(arrays["ndcg@10"]).copy()
    arrays["ndcg@10"][:n] = 1.0 - arrays["ndcg@10"][:n]
    np.savez_compressed(users, **arrays)
    return users, float(np.nanmean(arrays["ndcg@10"]))


def test_verify_accepts_an_untouched_folder(folder: Path):
    out = _cli("verify", str(folder))
    assert out.exit_code == 0, out.output
    assert "agree with every reported mean" in out.output
    assert "dataset and split fingerprints agree with the data" in out.output
    assert "are current" in out.output


@pytest.mark.parametrize("delta", [0.1, 1e-6, 1e-10, 1e-14])
def test_an_edited_metric_of_any_size_is_refused(copy: Path, delta: float):
    def change(rec):
        rec["evaluation"]["metrics"]["ndcg@10"] += delta

    _edit(copy / "runs" / RECORD, change)
    line = _one_line_error(_cli("verify", str(copy)))
    assert "ndcg@10" in line and "edited" in line
    line = _one_line_error(_cli("leaderboard", str(copy), "--check", str(copy / "leaderboard.md")))
    assert "ndcg@10" in line


def test_a_per_user_file_edited_with_its_sha256_is_refused(copy: Path):
    runs = copy / "runs"
    users, _ = _flip_ndcg(runs, 1)

    def change(rec):
        rec["evaluation"]["per_user"]["sha256"] = file_sha256(users)

    _edit(runs / RECORD, change)
    line = _one_line_error(_cli("verify", str(copy)))
    assert "ndcg@10" in line and "per-user file" in line


def test_a_per_user_file_changed_alone_is_refused(copy: Path):
    users = copy / "runs" / RECORD.replace(".json", ".users.npz")
    users.write_bytes(users.read_bytes() + b"\0")
    assert "sha256" in _one_line_error(_cli("verify", str(copy)))


@pytest.mark.parametrize("field", ["seed", "timings", "evaluation", "model.label", "protocol.split_fingerprint", "evaluation.per_user"])
def test_a_deleted_field_is_named(copy: Path, field: str):
    def change(rec):
        *parents, last = field.split(".")
        node = rec
        for p in parents:
            node = node[p]
        del node[last]

    _edit(copy / "runs" / RECORD, change)
    for args in (("verify", str(copy)), ("leaderboard", str(copy))):
        line = _one_line_error(_cli(*args))
        assert f"'{field}'" in line and RECORD in line


def test_a_mistyped_field_is_named(copy: Path):
    _edit(copy / "runs" / RECORD, lambda rec: rec.update(seed="0"))
    assert "'seed' must be int" in _one_line_error(_cli("verify", str(copy)))


def test_a_wrong_fingerprint_is_refused_when_the_data_is_at_hand(copy: Path):
    def change(rec):
        rec["protocol"]["split_fingerprint"] = "0" * 64

    _edit(copy / "runs" / RECORD, change)
    line = _one_line_error(_cli("verify", str(copy)))
    assert "split fingerprint 000000000000" in line
    assert "split fingerprint" not in _cli("verify", str(copy), "--no-data").output  # not looked at without the data

    _edit(copy / "runs" / RECORD, lambda rec: rec["dataset"].update(fingerprint="f" * 64))
    assert "dataset fingerprint ffffffffffff" in _one_line_error(_cli("verify", str(copy)))


def test_exports_exist_and_check_keeps_them_current(copy: Path):
    for name in ("leaderboard.md", "pairwise.md", "leaderboard.csv", "leaderboard.json"):
        assert (copy / name).is_file(), name
    plots = sorted((copy / "plots").glob("*.png"))
    assert {p.name.removesuffix("-at-k.png").rsplit("-", 1)[-1] for p in plots if p.name.endswith("-at-k.png")} == {"ndcg", "recall", "hr", "mrr"}
    assert any(p.name.endswith("-user-groups.png") for p in plots)
    assert all(len(png_text(p.read_bytes()).get(PLOT_KEY, "")) == 64 for p in plots)
    table = json.loads((copy / "leaderboard.json").read_text())["sections"][0]
    rec = json.loads((copy / "runs" / RECORD).read_text())
    mf = next(m for m in table["models"] if m["model"] == "mf")
    assert mf["metrics"]["ndcg@10"]["mean"] == rec["evaluation"]["metrics"]["ndcg@10"]
    csv_rows = (copy / "leaderboard.csv").read_text().splitlines()
    assert f"synthetic,cold-start,movies,mf,1,ndcg@10,{rec['evaluation']['metrics']['ndcg@10']!r}," in csv_rows
    check = ("leaderboard", str(copy), "--check", str(copy / "leaderboard.md"))
    assert _cli(*check).exit_code == 0

    (copy / "leaderboard.csv").write_text((copy / "leaderboard.csv").read_text().replace("mf", "MF"))
    assert "leaderboard.csv" in _one_line_error(_cli(*check))
    assert _cli("leaderboard", str(copy), "--output", str(copy / "leaderboard.md")).exit_code == 0
    assert _cli(*check).exit_code == 0

    # a plot drawn from other numbers: same picture bytes, another data hash
    plot = plots[0]
    data = plot.read_bytes()
    digest = png_text(data)[PLOT_KEY]
    plot.write_bytes(data.replace(digest.encode(), b"0" * 64))
    assert plot.name in _one_line_error(_cli(*check))
    plot.unlink()
    assert f"{plot.name} (missing)" in _one_line_error(_cli(*check))


def test_files_follow_the_umask_and_the_experiment_is_kept(folder: Path):
    for path in [folder / "leaderboard.md", folder / "experiment.json", *folder.glob("runs/*"), *folder.glob("plots/*")]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o640, path
    kept = experiment_from_text((folder / "runs" / "experiment.toml").read_text(), where="kept")
    manifest = json.loads((folder / "experiment.json").read_text())["experiment"]
    assert [m.name for m in kept.models] == ["popularity", "mf"] and kept.seeds == (0,) == tuple(manifest["seeds"])


def test_records_hold_the_peak_memory_of_each_run_and_the_cpu(folder: Path):
    rec = json.loads((folder / "runs" / RECORD).read_text())
    assert rec["timings"]["peak_rss_scope"] == "run"
    assert rec["timings"]["peak_rss_mb"] > 10
    assert rec["environment"]["cpu"] and rec["environment"]["cpu_cores"] >= 1


@pytest.mark.parametrize("source", [None, *sorted(ROOT.glob("leaderboards/*/experiment.toml"))], ids=str)
def test_experiment_toml_round_trips(source):
    exp = DEFAULT_EXPERIMENT if source is None else load_experiment(source)
    assert experiment_from_text(experiment_to_toml(exp), where="written") == exp


@pytest.mark.slow  # fits MF on the full default benchmark
def test_reproduce_a_row_of_the_default_leaderboard_bit_identically():
    out = _cli("reproduce", str(ROOT / "leaderboards" / "default" / "runs" / RECORD), "--tolerance", "0")
    assert out.exit_code == 0, out.output
    assert "bit-identical" in out.output


def test_reproduce_lists_what_differs(copy: Path):
    runs = copy / "runs"
    users, mean = _flip_ndcg(runs, 3)

    def change(rec):  # a consistent forgery: record, per-user file and sha256 all edited
        rec["evaluation"]["metrics"]["ndcg@10"] = mean
        rec["evaluation"]["per_user"]["sha256"] = file_sha256(users)

    _edit(runs / RECORD, change)
    assert _cli("verify", str(copy), "--no-data").exit_code == 2  # the tables no longer match
    out = _cli("reproduce", str(runs / RECORD))
    assert out.exit_code == 3, out.output
    assert "differs: ndcg@10:" in out.output
    assert "differs: per-user ndcg@10: 3 of" in out.output
