"""A simulation killed in the middle of a round resumes after its last finished round, to the same record."""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

import pytest
from conftest import run_child

pytestmark = pytest.mark.slow  # simulations in subprocesses, one killed

# `crossbench simulate` in a child process, with an MF model that kills its own process with
# SIGKILL in its second update (round 2) whenever the file named by $CROSSBENCH_TEST_BOMB exists.
SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    from crossbench import hookimpl
    from crossbench.cli import CliState, build_cli
    from crossbench.plugin.specs import ComponentSpec
    from crossbench_basic.specs import mf

    class Bomb:
        def __init__(self):
            self.inner, self.updates = mf(epochs=2, dim=8), 0
        def fit(self, split, *, env):
            return self.inner.fit(split, env=env)
        def update(self, split, *, env):
            self.updates += 1
            if self.updates == 2 and os.path.exists(os.environ.get("CROSSBENCH_TEST_BOMB", "")):
                os.kill(os.getpid(), signal.SIGKILL)
            return self.inner.update(split, env=env)
        def score(self, users, *, out=None):
            return self.inner.score(users, out=out)

    class Plugin:
        @hookimpl
        def crossbench_recommenders(self):
            return [ComponentSpec("bomb", Bomb, "mf that dies on request")]

    state = CliState(extra_plugins=[Plugin()])
    build_cli(state).main(args=sys.argv[1:], prog_name="crossbench", obj=state)
    """
)
ARGS = ["simulate", "--model", "bomb", "--model", "popularity", "--dataset-param", "n_users=500", "--dataset-param", "n_items=90",
        "--seeds", "0", "--rounds", "4", "--feedback", "planted", "--users", "60", "--warm-users", "30", "--threads", "1", "-q"]


def _child(tmp_path: Path, out: Path, *, bomb: bool) -> subprocess.CompletedProcess:
    return run_child(tmp_path, SCRIPT, [*ARGS, "--output", str(out)], bomb=bomb)


def _stable(path: Path) -> dict:
    rec = json.loads(path.read_text())
    for key in ("environment", "command"):
        rec.pop(key)
    for r in rec["rounds"]:
        r.pop("seconds")
        r["fit"].pop("train_seconds")
    return rec


def test_a_killed_simulation_resumes_at_its_last_finished_round(tmp_path):
    killed = _child(tmp_path, tmp_path / "a", bomb=True)
    assert killed.returncode == -9, killed.stderr
    rec_path = tmp_path / "a" / "simulations" / "movies-bomb-seed0.json"
    partial = json.loads(rec_path.read_text())
    assert not partial["finished"] and [r["round"] for r in partial["rounds"]] == [0, 1]
    assert not list((tmp_path / "a" / "simulations").glob(".*.tmp"))  # nothing half-written
    resumed = _child(tmp_path, tmp_path / "a", bomb=False)
    assert resumed.returncode == 0, resumed.stderr
    fresh = _child(tmp_path, tmp_path / "b", bomb=False)
    assert fresh.returncode == 0, fresh.stderr
    for name in ("movies-bomb-seed0.json", "movies-popularity-seed0.json"):
        a, b = _stable(tmp_path / "a" / "simulations" / name), _stable(tmp_path / "b" / "simulations" / name)
        assert a["finished"] and len(a["rounds"]) == 5
        assert a == b, name
    assert sum(r["taken"] for r in a["rounds"]) > 0
    # the rounds finished before the kill were kept as they were, not run again
    assert json.loads(rec_path.read_text())["rounds"][1]["seconds"] == partial["rounds"][1]["seconds"]
