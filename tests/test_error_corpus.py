"""Bad input, command by command: exit status 2, one `crossbench: error:` line, no traceback, nothing written."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from crossbench import hookimpl
from crossbench.cli import CliState, cli
from crossbench.plugin.specs import ComponentSpec

FAST = ["--model", "popularity", "--seeds", "0", "-q", "--threads", "1"]


def _setup(root: Path) -> None:
    (root / "afile").write_text("a regular file\n")
    (root / "expdir").mkdir()
    (root / "header.csv").write_text("user,item,domain,timestamp\n")
    (root / "nan.csv").write_text("user,item,domain,timestamp\nNaN,i1,books,1\n2,i1,books,2\n2,m1,movies,3\n")
    (root / "bad.toml").write_text('name = "x"\n[dataset\n')
    (root / "latin1.toml").write_bytes('name = "caf\xe9"\n'.encode("latin-1"))
    (root / "strings.toml").write_text('[dataset]\nname = "synthetic"\nn_users = "eight hundred"\n[[models]]\nname = "popularity"\n')
    (root / "nomodels.toml").write_text('[dataset]\nname = "synthetic"\n')
    (root / "notrecord.json").write_text(json.dumps({"hello": 1}))
    (root / "empty").mkdir()


CASES: dict[str, tuple[list[str], str]] = {
    "model param not an int": (["run", "--model", "mf", "--model-param", "dim=abc"], "parameter 'dim' expects int, got 'abc'"),
    "negative learning rate": (["run", "--model", "mf", "--model-param", "lr=-1"], "lr must be positive and finite, got -1"),
    "zero epochs": (["run", "--model", "mf", "--model-param", "epochs=0"], "epochs must be at least 1"),
    "itemknn negative k": (["run", "--model", "itemknn", "--model-param", "k=-5"], "k must be at least 1"),
    "ease negative l2": (["run", "--model", "ease", "--model-param", "l2=-1"], "l2 must be positive"),
    "unknown hyperparameter": (["run", "--model", "mf", "--model-param", "dimm=8"], "did you mean 'dim'"),
    "dataset param not an int": (["run", "--dataset-param", "n_users=abc"], "parameter 'n_users' expects int"),
    "dataset param out of range": (["run", "--dataset-param", "n_users=-3", *FAST], "n_users must be at least 10"),
    "protocol param out of range": (["run", "--protocol-param", "test_fraction=2", *FAST], "test_fraction must be in (0, 1)"),
    "experiment string for an int": (["run", "strings.toml"], "parameter 'n_users' expects int, got 'eight hundred'"),
    "experiment path is a folder": (["run", "expdir"], "is a folder"),
    "experiment file missing": (["run", "nothere.toml"], "does not exist"),
    "experiment malformed TOML": (["run", "bad.toml"], "malformed TOML"),
    "experiment not UTF-8": (["run", "latin1.toml"], "not UTF-8"),
    "experiment without models": (["run", "nomodels.toml"], "no [[models]]"),
    "tabular without path": (["run", "--dataset", "tabular", *FAST], "'path' are required"),
    "tabular header only": (["run", "--dataset", "tabular", "--dataset-param", "path=header.csv", *FAST], "no data rows"),
    "tabular NaN user id": (["run", "--dataset", "tabular", "--dataset-param", "path=nan.csv", *FAST], "holds 'NaN', a missing-value marker"),
    "output is a file": (["run", "--output", "afile", *FAST], "is an existing file"),
    "output under a file": (["run", "--output", "afile/sub", *FAST], "cannot write there"),
    "output under /proc": (["run", "--output", "/proc/crossbench-out", *FAST], "cannot write there"),
    "empty seeds": (["run", "--seeds", ""], "no values given"),
    "empty cut-offs": (["run", "--ks", ""], "no values given"),
    "empty metrics": (["run", "--metrics", ""], "no values given"),
    "repeated seed": (["run", "--seeds", "0,0"], "given more than once"),
    "seeds not integers": (["run", "--seeds", "a,b"], "expected comma-separated ints"),
    "zero negatives": (["run", "--sampled", "0"], "give a positive number of negatives"),
    "sampling without sampled": (["run", "--sampling", "popularity"], "add --sampled N"),
    "unknown model": (["run", "--model", "mff"], "unknown model 'mff'"),
    "unknown dataset": (["run", "--dataset", "synthetc"], "unknown dataset 'synthetc'"),
    "unknown metric": (["run", "--metrics", "ndgc"], "unknown metric 'ndgc'"),
    "unknown protocol": (["run", "--protocol", "holdout"], "unknown protocol 'holdout'"),
    "zero threads": (["run", "--threads", "0", "--model", "popularity"], "--threads must be at least 1"),
    "unknown device": (["run", "--device", "tpu", "--model", "popularity"], "unknown device 'tpu'"),
    "tune bad objective": (["tune", "--objective", "ndcg", "--model", "mf"], "expected NAME@K"),
    "tune zero trials": (["tune", "--trials", "0", "--model", "mf"], "--trials must be at least 1"),
    "data stats unknown dataset": (["data", "stats", "nonexistent"], "unknown dataset 'nonexistent'"),
    "data fetch unknown dataset": (["data", "fetch", "nonexistent"], "unknown dataset 'nonexistent'"),
    "leaderboard of no records": (["leaderboard", "empty"], "no run records found"),
    "leaderboard of a non-record": (["leaderboard", "notrecord.json"], "not a crossbench run record"),
    "verify a folder without records": (["verify", "empty"], "no run records found"),
    "reproduce a non-record": (["reproduce", "notrecord.json"], "not a crossbench run record"),
}


def _tree(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")}


@pytest.mark.parametrize("case", sorted(CASES), ids=str)
def test_bad_input_is_one_line_and_exit_2(case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    args, expected = CASES[case]
    _setup(tmp_path)
    monkeypatch.chdir(tmp_path)
    before = _tree(tmp_path)
    out = CliRunner().invoke(cli, args, obj=CliState())
    assert out.exit_code == 2, (out.output, out.exception)
    assert "Traceback" not in out.output
    lines = out.output.strip().splitlines()
    errors = [line for line in lines if line.startswith("crossbench: error:")]
    assert len(errors) == 1 and expected in errors[0], out.output
    assert _tree(tmp_path) == before, "bad input wrote something"
    assert not Path("/proc/crossbench-out").exists()


def test_a_deleted_evaluation_field_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(cli, ["run", *FAST, "--output", "out"], obj=CliState())
    assert res.exit_code == 0, res.output
    record = next((tmp_path / "out" / "runs").glob("*.json"))
    body = json.loads(record.read_text())
    del body["evaluation"]
    record.write_text(json.dumps(body))
    out = CliRunner().invoke(cli, ["leaderboard", "out"], obj=CliState())
    assert out.exit_code == 2 and "required field 'evaluation' is missing" in out.output


def test_a_300_character_label_and_unicode_names_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    label = "模" * 300
    (tmp_path / "exp.toml").write_text(
        f'name = "实验/../../x"\nseeds = [0]\n[dataset]\nname = "synthetic"\nn_users = 300\n[[models]]\nname = "popularity"\nlabel = "{label}"\n',
        encoding="utf-8",
    )
    out = CliRunner().invoke(cli, ["run", "exp.toml", "-q", "--threads", "1"], obj=CliState())
    assert out.exit_code == 0, out.output
    (folder,) = (tmp_path / "crossbench-results").iterdir()
    assert folder.name.startswith("x-") and len(folder.name) <= 80
    (record,) = (folder / "runs").glob("*-seed0.json")
    assert len(record.name) < 120 and json.loads(record.read_text())["model"]["label"] == label
    assert not (tmp_path.parent / "x").exists()


def test_a_cut_off_beyond_the_catalogue_is_warned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    out = CliRunner().invoke(cli, ["run", *FAST, "--dataset-param", "n_users=300", "--dataset-param", "n_items=40",
                                   "--ks", "10,100", "--output", "out"], obj=CliState())
    assert out.exit_code == 0, out.output
    assert "crossbench: warning: cut-off(s) 100 exceed the 40 items of target 'movies'" in out.output


def test_files_are_written_with_the_umask(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    old = os.umask(0o002)
    try:
        out = CliRunner().invoke(cli, ["run", *FAST, "--dataset-param", "n_users=300", "--output", "out"], obj=CliState())
    finally:
        os.umask(old)
    assert out.exit_code == 0, out.output
    modes = {oct(p.stat().st_mode & 0o777) for p in (tmp_path / "out").rglob("*") if p.is_file() and p.name != ".crossbench.lock"}
    assert modes == {"0o664"}


class _Buggy:
    """A plugin whose model has a bug: fit raises a plain exception."""

    @hookimpl
    def crossbench_recommenders(self):  # type: ignore[no-untyped-def]
        from crossbench_basic.models import Popularity

        class Broken(Popularity):
            def fit(self, split, *, env):  # type: ignore[no-untyped-def]
                raise ZeroDivisionError("plugin arithmetic")

        return [ComponentSpec("broken", lambda: Broken(), "fails in fit")]


def test_a_bug_is_one_line_exit_1_with_the_traceback_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    out = CliRunner().invoke(cli, ["run", "--model", "broken", "--seeds", "0", "-q", "--output", "out",
                                   "--dataset-param", "n_users=300"], obj=CliState(extra_plugins=[_Buggy()]))
    assert out.exit_code == 1, out.output
    (line,) = [x for x in out.output.splitlines() if x.startswith("crossbench:")]
    assert "internal error (a bug, not your input): ZeroDivisionError: plugin arithmetic" in line
    saved = Path(line.split("traceback in ", 1)[1].split(";", 1)[0])
    assert "Traceback" in saved.read_text() and "plugin arithmetic" in saved.read_text()
    assert "Traceback" not in out.output
    assert not list((tmp_path / "out").glob("runs/*.json"))  # no record of a failed run


def test_usage_errors_follow_the_contract() -> None:
    out = CliRunner().invoke(cli, ["run", "--bogus"], obj=CliState())
    assert out.exit_code == 2
    (line,) = out.output.strip().splitlines()
    assert line.startswith("crossbench: error: No such option '--bogus'.") and line.endswith(" run --help`)")


class _FailingLogger:
    """A plugin whose run-finished hook raises."""

    @hookimpl
    def crossbench_run_finished(self, record, path):  # type: ignore[no-untyped-def]
        raise OSError("the log server is down")


def test_a_failing_run_finished_hook_is_a_warning_and_the_runs_are_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    out = CliRunner().invoke(cli, ["run", "--model", "popularity", "--seeds", "0,1", "-q", "--output", "out", "--dataset-param", "n_users=300"],
                             obj=CliState(extra_plugins=[_FailingLogger()]))
    assert out.exit_code == 0, out.output
    warnings = [x for x in out.output.splitlines() if "crossbench_run_finished failed" in x]
    assert len(warnings) == 2 and "_FailingLogger" in warnings[0] and "the log server is down" in warnings[0]
    assert len(list((tmp_path / "out" / "runs").glob("*-seed*.json"))) == 2


def test_an_unwritable_output_is_refused_before_any_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a read-only folder (root ignores mode bits, so the refusal is simulated where the probe writes)
    import tempfile

    monkeypatch.chdir(tmp_path)
    real = tempfile.mkstemp

    def refuse(*args, **kwargs):  # type: ignore[no-untyped-def]
        if kwargs.get("prefix") == ".probe.":
            raise PermissionError(13, "Permission denied")
        return real(*args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    out = CliRunner().invoke(cli, ["run", *FAST], obj=CliState())
    assert out.exit_code == 2
    assert "cannot write there (Permission denied)" in out.output
    assert not (tmp_path / "crossbench-results").exists()
