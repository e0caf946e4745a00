"""``--nproc`` through the command line, the launcher's watchdog, and torchrun's c10d rendezvous.

The watchdog tests start stand-in ranks (small Python programs) so that each failure is
certain and quick; the end-to-end tests run ``crossbench run`` on tiny synthetic data in
subprocesses, 2 ranks joined by gloo on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from crossbench.cli import CliState, cli
from crossbench.cli.launch import GRACE_S, KILL_AFTER_S, POLL_S, RankProcess, start_rank, watch

CROSSBENCH = str(Path(sys.executable).parent / "crossbench")
TINY = ["--dataset", "synthetic", "--dataset-param", "n_users=200", "--dataset-param", "n_items=50", "--protocol", "cold-start",
        "--metrics", "ndcg", "--ks", "10", "--seeds", "0", "--threads", "1"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
#: every rank ends within this many seconds of the first failure (launch module docstring), plus process start-up slack
BOUND_S = POLL_S + GRACE_S + KILL_AFTER_S + 2.0
#: the same for real ranks on a shared machine: 12 s were seen under a load average of 40 on 2 cores
LOADED_BOUND_S = 30.0


def _stand_in(rank: int, code: str) -> RankProcess:
    return start_rank(rank, 2, 1, [sys.executable, "-c", code])


SLEEP = "import time; time.sleep(60)"


@pytest.mark.slow  # stand-in ranks are processes (about 1 s each case)
@pytest.mark.parametrize(
    ("code", "status", "line"),
    [
        ("import sys; sys.stderr.write('crossbench: error: boom at step 3\\n'); sys.exit(2)", 2, "rank 1 of 2 failed: boom at step 3"),
        ("import os; os._exit(7)", 7, "rank 1 of 2 exited with status 7 without an error line"),
        ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", 1, "rank 1 of 2 was killed by SIGKILL"),
    ],
)
def test_a_failed_rank_stops_every_rank_with_one_line(code: str, status: int, line: str, capsys: pytest.CaptureFixture[str]) -> None:
    t0 = time.monotonic()
    ranks = [_stand_in(0, SLEEP), _stand_in(1, code)]
    assert watch(ranks) == status
    assert time.monotonic() - t0 < BOUND_S
    assert all(r.process.poll() is not None for r in ranks)  # rank 0 was stopped, not left sleeping
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert err == [f"crossbench: error: {line}; every rank was stopped"]


@pytest.mark.slow
def test_the_rank_that_caused_a_failure_is_named_not_the_one_that_lost_contact(capsys: pytest.CaptureFixture[str]) -> None:
    lost = "import sys; sys.stderr.write('crossbench: error: rank 0 of 2: lost contact with the other ranks (x)\\n'); sys.exit(2)"
    cause = "import sys, time; time.sleep(0.3); sys.stderr.write('crossbench: error: the real cause\\n'); sys.exit(2)"
    assert watch([_stand_in(0, lost), _stand_in(1, cause)]) == 2
    assert capsys.readouterr().err.strip() == "crossbench: error: rank 1 of 2 failed: the real cause; every rank was stopped"


@pytest.mark.slow
def test_ranks_that_succeed_end_the_command_with_status_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert watch([_stand_in(0, "print('ok')"), _stand_in(1, "pass")]) == 0
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--nproc", "0"], {}, "--nproc 0: give at least 1 process"),
        (["--nproc", "3"], {"WORLD_SIZE": "2"}, "--nproc 3 under a launcher of 2 processes (WORLD_SIZE); leave --nproc out"),
        (["--nproc", "2"], {}, "launch the program with torchrun instead"),  # not the console command: nothing to copy
    ],
)
def test_bad_nproc_is_one_line_and_status_2(args: list[str], env: dict[str, str], message: str, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    out = CliRunner().invoke(cli, ["run", *TINY, "--model", "popularity", "--output", str(tmp_path / "r"), *args], obj=CliState())
    assert out.exit_code == 2, out.output
    lines = [ln for ln in out.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and message in lines[0], out.output
    assert not (tmp_path / "r" / "runs").exists()


def _record(folder: Path, name: str) -> dict:
    return json.loads((folder / "runs" / name).read_text())


def _children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(x) for x in text.split()]


def _rank_of(pid: int) -> int | None:
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    found = [e for e in environ if e.startswith(b"RANK=")]
    return int(found[0][5:]) if found else None


@pytest.mark.slow
def test_nproc_runs_end_to_end_and_a_killed_rank_ends_the_run_then_the_same_command_resumes(tmp_path: Path) -> None:
    out = tmp_path / "out"
    command = [CROSSBENCH, "run", *TINY, "--model", "popularity", "--model", "shared-mean", "--model-param",
               "shared-mean.epochs=30", "--model-param", "shared-mean.patience=30", "--output", str(out), "--nproc", "2"]
    first = subprocess.Popen(command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    popularity = out / "runs" / "movies-popularity-seed0.json"
    deadline = time.monotonic() + 240
    while not popularity.exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert popularity.exists(), first.communicate()
    victim = next(p for p in _children(first.pid) if _rank_of(p) == 1)
    os.kill(victim, signal.SIGKILL)  # rank 1 dies while shared-mean trains
    t_kill = time.monotonic()
    _, err = first.communicate(timeout=60)
    assert time.monotonic() - t_kill < LOADED_BOUND_S
    assert first.returncode == 1
    errors = [ln for ln in err.splitlines() if ln.startswith("crossbench: ")]
    assert errors == ["crossbench: error: rank 1 of 2 was killed by SIGKILL; every rank was stopped"], err
    assert sorted(p.name for p in (out / "runs").iterdir()) == [  # nothing of the interrupted run, nothing half-written
        "experiment.toml", "movies-popularity-seed0.json", "movies-popularity-seed0.users.npz"]
    kept = popularity.read_bytes()

    second = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    assert "run 1 of 2: popularity on movies seed 0: finished earlier, kept" in second.stderr
    assert popularity.read_bytes() == kept
    rec = _record(out, "movies-shared-mean-seed0.json")
    assert rec["distributed"] == {"world_size": 2, "backend": "gloo", "devices": ["cpu", "cpu"]}
    assert rec["fit"]["epochs"] >= 1 and rec["evaluation"]["metrics"]["ndcg@10"] > 0
    verify = subprocess.run([CROSSBENCH, "verify", str(out), "--no-data"], env=ENV, capture_output=True, text=True, timeout=120)
    assert verify.returncode == 0, verify.stderr + verify.stdout
    assert "shared-mean (2 processes, gloo, on cpu)" in (out / "leaderboard.md").read_text()
    one = subprocess.run([CROSSBENCH, "reproduce", str(out / "runs" / "movies-shared-mean-seed0.json")], env=ENV,
                         capture_output=True, text=True, timeout=300)  # the 2-process row on 1 process
    assert "processes: 2 processes (gloo) in the record, 1 process now" in one.stdout, one.stdout + one.stderr
    if one.returncode == 3:  # the differences, each listed
        assert one.stdout.count("differs: ") >= 1 and "difference(s) beyond bit-identical" in one.stderr
    else:
        assert one.returncode == 0 and "reproduced movies-shared-mean-seed0.json" in one.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_two_hosts_through_torchruns_c10d_rendezvous_on_127_0_0_1(tmp_path: Path) -> None:
    """The two commands of docs/scaling.md, one per "host", both on 127.0.0.1."""
    port, out = _free_port(), tmp_path / "out"
    torchrun = str(Path(sys.executable).parent / "torchrun")
    hosts = [
        subprocess.Popen([torchrun, "--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "c10d",
                          "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "crossbench-test", "--no-python", CROSSBENCH,
                          "run", *TINY, "--model", "shared-mean", "--model-param", "epochs=2", "--output", str(out), "-q"],
                         env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = [h.communicate(timeout=300) for h in hosts]
    assert [h.returncode for h in hosts] == [0, 0], results
    assert sum("| shared-mean" in stdout for stdout, _ in results) == 1  # rank 0 alone prints the table
    rec = _record(out, "movies-shared-mean-seed0.json")
    assert rec["distributed"] == {"world_size": 2, "backend": "gloo", "devices": ["cpu", "cpu"]}
