"""Progress lines: on stderr while a user waits (runs, epochs, trials), none on stdout, none with -q."""

from __future__ import annotations

import re
import time

import pytest
from click.testing import CliRunner

from crossbench.cli import CliState, cli
from crossbench.progress import QUIET_SECONDS, EpochClock, duration

TOML = """
name = "tiny"
metrics = ["ndcg", "recall"]
ks = [10]
seeds = [0, 1]
[dataset]
name = "synthetic"
n_users = 300
n_items = 80
[protocol]
name = "cold-start"
test_fraction = 0.5
valid_fraction = 0.2
[[models]]
name = "popularity"
[[models]]
name = "mf"
epochs = 2
patience = 5
dim = 8
"""


def test_durations_read_as_people_write_them():
    assert [duration(s) for s in (0.44, 9.96, 12.4, 59.4, 61, 185, 3725)] == [
        "0.4 s", "10.0 s", "12 s", "59 s", "1 min 01 s", "3 min 05 s", "1 h 02 min",
    ]


def test_an_epoch_line_has_the_total_the_value_the_best_and_the_time_left():
    clock = EpochClock(30, metric="validation ndcg@10", enabled=False)
    assert clock.line(1, 0.2).startswith("  epoch 1/30: validation ndcg@10 0.2000; ")
    clock.started = time.perf_counter() - 8.0  # two epochs of 4 s each so far: 28 epochs of 4 s left
    line = clock.line(2, 0.12345)
    assert re.fullmatch(r"  epoch 2/30: validation ndcg@10 0\.1235 \(best 0\.2000, epoch 1\); 4\.0 s per epoch, "
                        r"at most 1 min 5[12] s left", line), line
    assert clock.line(30, 0.3).endswith("per epoch") and "best" not in clock.line(30, 0.3)  # the last epoch: nothing left
    seen = []
    clock.epoch(31, 0.25, then=lambda e, v: seen.append((e, v)))
    assert seen == [(31, 0.25)] and (clock.best, clock.best_epoch) == (0.3, 30)


def test_epochs_without_a_value_are_said_at_most_every_few_seconds(capsys):
    clock = EpochClock(100, label="pretrain epoch")
    for epoch in range(1, 101):
        clock.epoch(epoch)
        if epoch == 50:
            clock.said -= QUIET_SECONDS  # as if the epochs so far had taken that long
    lines = capsys.readouterr().err.splitlines()
    assert [line.split("/")[0] for line in lines] == ["  pretrain epoch 1", "  pretrain epoch 51", "  pretrain epoch 100"]


def _invoke(tmp_path, *args):
    exp = tmp_path / "tiny.toml"
    exp.write_text(TOML, encoding="utf-8")
    return CliRunner().invoke(cli, [*args, str(exp), "--threads", "1", "--output", str(tmp_path / args[0])], obj=CliState())


@pytest.mark.slow  # two seeds of two models, then again quiet
def test_run_reports_each_run_and_epoch_on_stderr_and_nothing_with_q(tmp_path):
    out = _invoke(tmp_path, "run")
    assert out.exit_code == 0, out.output
    err = out.stderr
    for position, name, seed in ((1, "popularity", 0), (2, "mf", 0), (3, "popularity", 1), (4, "mf", 1)):
        assert f"run {position} of 4: {name} on movies seed {seed}\n" in err
        assert re.search(rf"run {position} of 4: {name} on movies seed {seed}: done, ndcg@10 0\.\d{{4}}; fit ", err), err
    assert re.search(r"^  epoch 1/2: validation ndcg@10 0\.\d{4}; [\d.]+ s per epoch(, at most [\d.]+ s left)?$", err, re.M), err
    assert re.search(r"^  epoch 2/2: validation ndcg@10 0\.\d{4}.*; [\d.]+ s per epoch$", err, re.M), err
    assert "2 epochs, best" in err
    assert "run 1 of 4" not in out.stdout and "| mf" in out.stdout  # stdout: the table only

    quiet = CliRunner().invoke(cli, ["run", str(tmp_path / "tiny.toml"), "--threads", "1", "-q", "--output", str(tmp_path / "q")],
                               obj=CliState())
    assert quiet.exit_code == 0, quiet.output
    assert "run 1 of 4" not in quiet.stderr and "epoch 1/" not in quiet.stderr and "| mf" in quiet.stdout


@pytest.mark.slow  # two trials on two splits, then the final fits
def test_tune_reports_each_trial_with_the_best_so_far(tmp_path):
    out = _invoke(tmp_path, "tune", "--trials", "2")
    assert out.exit_code == 0, out.output
    err = out.stderr
    assert re.search(r"tuning mf on movies seed 0: 2 trials, \d+ hyperparameters, on \d+ validation users\n", err), err
    for seed in (0, 1):
        assert f"mf on movies seed {seed}: trial 1 of 2: lr=0.005, " in err  # the first trial: the defaults
        done = re.findall(rf"mf on movies seed {seed}: trial (\d) of 2 done: ndcg@10 (0\.\d{{4}}), best so far (0\.\d{{4}})", err)
        assert [d[0] for d in done] == ["1", "2"], err
        first, second = (float(d[1]) for d in done)
        assert float(done[0][2]) == first and float(done[1][2]) == max(first, second)
    assert "run 2 of 4: mf on movies seed 0" in err
    quiet = CliRunner().invoke(cli, ["tune", str(tmp_path / "tiny.toml"), "--trials", "2", "--threads", "1", "-q", "--output",
                                     str(tmp_path / "q")], obj=CliState())
    assert quiet.exit_code == 0, quiet.output
    assert "trial 1 of 2" not in quiet.stderr and "epoch 1/" not in quiet.stderr and "tuning mf" not in quiet.stderr
