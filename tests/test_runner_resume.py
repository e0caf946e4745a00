"""Runs that lose nothing: kept as they finish, resumed after a kill, refused when they would clash."""

from __future__ import annotations

import json
import subprocess
import textwrap
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import run_child

from crossbench.cli import CliState, cli
from crossbench.errors import CrossbenchError
from crossbench.records.folder import ResultsFolder

SMALL = ["--dataset-param", "n_users=400", "--dataset-param", "n_items=80", "--threads", "1", "-q"]

# A crossbench command line in a child process, with a model that kills its own process with
# SIGKILL while fitting whenever the file named by $CROSSBENCH_TEST_BOMB exists.
SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    from crossbench import hookimpl
    from crossbench.cli import CliState, build_cli
    from crossbench.plugin.specs import ComponentSpec
    from crossbench_basic.specs import mf

    class Bomb:
        def __init__(self):
            self.inner = mf(epochs=2, dim=8)
        def fit(self, split, *, env):
            if os.path.exists(os.environ.get("CROSSBENCH_TEST_BOMB", "")):
                os.kill(os.getpid(), signal.SIGKILL)
            return self.inner.fit(split, env=env)
        def score(self, users, *, out=None):
            return self.inner.score(users, out=out)
        def describe(self):
            return self.inner.describe()
        def components(self):
            return {}

    class Plugin:
        @hookimpl
        def crossbench_recommenders(self):
            return [ComponentSpec("bomb", Bomb, "mf that dies on request")]

    state = CliState(extra_plugins=[Plugin()])
    build_cli(state).main(args=sys.argv[1:], prog_name="crossbench", obj=state)
    """
)

VOLATILE = {"seal", "timings", "environment", "command", "_path"}


def _child(tmp_path: Path, args: list[str], *, bomb: bool) -> subprocess.CompletedProcess:
    return run_child(tmp_path, SCRIPT, args, bomb=bomb)


def _stable(folder: Path) -> dict[str, dict]:
    out = {}
    for f in sorted((folder / "runs").glob("*.json")):
        rec = json.loads(f.read_text())
        rec["dataset"].pop("load_s")
        rec["fit"].pop("train_seconds")
        out[f.name] = {k: v for k, v in rec.items() if k not in VOLATILE}
    return out


@pytest.mark.slow  # runs in subprocesses, one killed
def test_a_killed_run_resumes_to_the_records_of_an_uninterrupted_one(tmp_path):
    args = ["run", "--model", "popularity", "--model", "bomb", "--model", "mf", "--model-param", "mf.epochs=2",
            "--model-param", "mf.dim=8", "--seeds", "0,1", *SMALL]
    whole = _child(tmp_path, [*args, "--output", str(tmp_path / "whole")], bomb=False)
    assert whole.returncode == 0, whole.stderr
    killed = _child(tmp_path, [*args, "--output", str(tmp_path / "resumed")], bomb=True)
    assert killed.returncode == -9
    kept = sorted(p.name for p in (tmp_path / "resumed" / "runs").glob("*.json"))
    assert kept == ["movies-popularity-seed0.json"]  # the run finished before the kill is kept
    # a temporary file as a kill in the middle of writing leaves one behind
    (tmp_path / "resumed" / "runs" / ".movies-bomb-seed0.users.npz.x1y2.tmp").write_bytes(b"PK")
    leftovers = list((tmp_path / "resumed" / "runs").glob(".*"))
    resumed = _child(tmp_path, [*args, "--output", str(tmp_path / "resumed")], bomb=False)
    assert resumed.returncode == 0, resumed.stderr
    assert leftovers and not [p for p in leftovers if p.exists()]
    assert _stable(tmp_path / "whole") == _stable(tmp_path / "resumed")
    assert len(_stable(tmp_path / "whole")) == 6
    # the tables agree but for the columns after the metrics (fit seconds and peak memory vary) and the command line
    strip = lambda text: [line.rsplit("|", 5)[0] for line in text.splitlines() if line.startswith("| ")]  # noqa: E731
    assert strip((tmp_path / "resumed" / "leaderboard.md").read_text()) == strip((tmp_path / "whole" / "leaderboard.md").read_text())


def test_rerun_skips_finished_runs_and_another_experiment_is_refused(tmp_path):
    out = tmp_path / "r"
    base = ["run", "--model", "popularity", "--seeds", "0", *SMALL, "--output", str(out)]
    first = CliRunner().invoke(cli, base, obj=CliState())
    assert first.exit_code == 0, first.output
    record = out / "runs" / "movies-popularity-seed0.json"
    stamp = record.stat().st_mtime_ns
    again = CliRunner().invoke(cli, base, obj=CliState())
    assert again.exit_code == 0 and record.stat().st_mtime_ns == stamp  # kept, not recomputed
    other = CliRunner().invoke(cli, [*base, "--seeds", "1"], obj=CliState())
    assert other.exit_code == 2 and "holds the results of another experiment" in other.output and "--overwrite" in other.output
    assert record.stat().st_mtime_ns == stamp
    replaced = CliRunner().invoke(cli, [*base, "--seeds", "1", "--overwrite"], obj=CliState())
    assert replaced.exit_code == 0, replaced.output
    assert sorted(p.name for p in (out / "runs").glob("*.json")) == ["movies-popularity-seed1.json"]


def test_a_second_concurrent_run_is_refused_and_leftovers_of_dead_runs_go(tmp_path):
    out = tmp_path / "busy"
    (out / "runs").mkdir(parents=True)
    stale = [out / "runs" / ".movies-mf-seed0.json.abc.tmp", tmp_path / ".busy.staging-xyz"]
    stale[0].write_text("{")
    stale[1].mkdir()
    args = ["run", "--model", "popularity", "--seeds", "0", *SMALL, "--output", str(out)]
    with ResultsFolder(out).locked():
        refused = CliRunner().invoke(cli, args, obj=CliState())
    assert refused.exit_code == 2 and "in use by another crossbench run" in refused.output
    assert not list((out / "runs").glob("*.json"))
    done = CliRunner().invoke(cli, args, obj=CliState())
    assert done.exit_code == 0, done.output
    assert not any(p.exists() for p in stale)


def test_a_waiting_holder_gets_the_lock_once_the_first_lets_go(tmp_path):
    folder = ResultsFolder(tmp_path / "busy")
    got, failed = threading.Event(), []

    def second() -> None:
        try:
            with ResultsFolder(folder.path).locked(wait_s=120):
                got.set()
        except Exception as exc:  # noqa: BLE001 - reported to the test below
            failed.append(exc)

    with folder.locked():
        waiter = threading.Thread(target=second)
        waiter.start()
        waiter.join(timeout=0.5)
        assert not got.is_set() and not failed  # never while the first holds it, however the threads are scheduled
        with pytest.raises(CrossbenchError, match="in use by another crossbench run"):
            with ResultsFolder(folder.path).locked():  # no wait: refused at once
                pass
    waiter.join(timeout=120)
    assert got.is_set() and not failed


def test_command_line_runs_without_a_name_get_their_own_folders(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    a = CliRunner().invoke(cli, ["run", "--model", "popularity", "--seeds", "0", *SMALL], obj=CliState())
    b = CliRunner().invoke(cli, ["run", "--model", "popularity", "--seeds", "1", *SMALL], obj=CliState())
    assert a.exit_code == 0 and b.exit_code == 0, a.output + b.output
    folders = sorted(p.name for p in (tmp_path / "crossbench-results").iterdir())
    assert len(folders) == 2 and all(f.startswith("custom-") for f in folders)
