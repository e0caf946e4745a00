"""`crossbench tune --worker` processes sharing studies: kill one with SIGKILL, run two at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from crossbench.tune.storage import open_storage, resolve_storage
from crossbench.tune.trials import RETRY_OF, SURPLUS

# A child crossbench process with a model whose fit takes about 0.3 s.
SCRIPT = textwrap.dedent(
    """
    import sys, time
    import torch
    from crossbench import hookimpl
    from crossbench.cli import CliState, build_cli
    from crossbench.plugin.interfaces import FitReport, Recommender
    from crossbench.plugin.specs import ComponentSpec, FloatParam

    class Slow(Recommender):
        def __init__(self, *, x: float = 0.5):
            self.x = x
        def fit(self, split, *, env):
            time.sleep(0.3)
            self.n = split.train.domain(split.target).n_items
            return FitReport()
        def score(self, users, *, out=None):
            return torch.arange(self.n, dtype=torch.float32).mul(self.x).expand(len(users), -1).contiguous()

    class Plugin:
        @hookimpl
        def crossbench_recommenders(self):
            return [ComponentSpec("slow", Slow, "sleeps while fitting", (FloatParam("x", -1.0, 1.0),))]

    state = CliState(extra_plugins=[Plugin()])
    build_cli(state).main(args=sys.argv[1:], prog_name="crossbench", obj=state)
    """
)
STUDY = "w/movies/seed0/slow"

pytestmark = pytest.mark.slow  # tuning workers in subprocesses


def _args(tmp_path: Path, journal: Path, trials: int) -> list[str]:
    script = tmp_path / "worker.py"
    script.write_text(SCRIPT)
    return [sys.executable, str(script), "tune", "--worker", "--model", "slow", "--seeds", "0", "--trials", str(trials),
            "--dataset-param", "n_users=300", "--dataset-param", "n_items=60", "--storage", f"journal:{journal}",
            "--study", "w", "--heartbeat", "1", "--pruner", "none", "--threads", "1", "-q", "--output", str(tmp_path / "out")]


def _trials(journal: Path, tmp_path: Path) -> list[optuna.trial.FrozenTrial]:
    storage = open_storage(resolve_storage(f"journal:{journal}", results_dir=tmp_path), heartbeat_interval=None)
    try:
        return optuna.load_study(study_name=STUDY, storage=storage).get_trials(deepcopy=False)
    except KeyError:
        return []


def _finished(trials):
    return [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]


def test_a_worker_killed_mid_study_is_resumed_without_losing_or_repeating_trials(tmp_path):
    journal = tmp_path / "study.log"
    first = subprocess.Popen(_args(tmp_path, journal, 8), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        trials = _trials(journal, tmp_path)
        # kill while a trial runs with its parameters drawn (a trial killed before its draw has none to keep)
        if len(_finished(trials)) >= 3 and any(t.state == TrialState.RUNNING and t.params for t in trials):
            break
        time.sleep(0.05)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    before = _trials(journal, tmp_path)
    done_before = {t.number: (t.params, t.value) for t in _finished(before)}
    (lost,) = [t for t in before if t.state == TrialState.RUNNING]
    assert len(done_before) >= 3

    again = subprocess.run(_args(tmp_path, journal, 8), capture_output=True, text=True, timeout=180, check=False)
    assert again.returncode == 0, again.stderr
    after = _trials(journal, tmp_path)
    finished = _finished(after)
    assert len(finished) == 8
    # every trial finished before the kill is kept as it was, and none is run twice
    assert {t.number: (t.params, t.value) for t in finished if t.number in done_before} == done_before
    assert len({tuple(sorted(t.params.items())) for t in finished}) == 8
    assert len({t.number for t in after}) == len(after)
    # the trial the killed worker was running failed, and ran again with the same parameters
    by_number = {t.number: t for t in after}
    assert by_number[lost.number].state == TrialState.FAIL
    (retry,) = [t for t in after if t.user_attrs.get(RETRY_OF) == lost.number]
    assert retry.state == TrialState.COMPLETE
    if lost.params:  # (the kill can still land between two trials' draws, leaving nothing to keep)
        assert retry.params == lost.params


def test_two_workers_on_one_journal_share_a_study(tmp_path):
    journal = tmp_path / "shared.log"
    procs = [subprocess.Popen(_args(tmp_path, journal, 6), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=180)
        assert p.returncode == 0, err
    trials = _trials(journal, tmp_path)
    finished = _finished(trials)
    assert len(finished) == 6
    assert len({t.number for t in trials}) == len(trials)
    assert len({tuple(sorted(t.params.items())) for t in finished}) == 6
    # anything beyond the budget was claimed by a worker too late and marked as surplus, never run
    assert all(t.user_attrs.get(SURPLUS) for t in trials if t.state == TrialState.FAIL)
