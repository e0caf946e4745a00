"""Hostile, tampered and broken results folders and tuning studies.

Each folder case is refused with exit status 2 and one `crossbench: error:` line, no
traceback, and nothing in the folder (or outside it) changed; a study opened by two workers at
the same instant is always shared; a dead worker's trial on this machine is retried at once.
"""

from __future__ import annotations

import hashlib
import io
import json
import multiprocessing
import os
import queue
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
from click.testing import CliRunner
from optuna.trial import TrialState

from crossbench.cli import CliState, cli
from crossbench.files import file_sha256
from crossbench.records.schema import record_seal
from crossbench.report.leaderboard import md_table, render_markdown
from crossbench.tune.storage import open_storage, resolve_storage
from crossbench.tune.trials import HEARTBEAT, RETRY_OF, WORKER, Budget, optimize, retry_stale, this_worker, worker_gone
from crossbench.tune.tuning import COMPARED, META, open_study

SMALL = ["--dataset-param", "n_users=300", "--dataset-param", "n_items=60", "--seeds", "0", "--threads", "1", "-q"]
RECORD = "movies-popularity-seed0.json"
USERS = "movies-popularity-seed0.users.npz"


def _cli(*args: str):
    return CliRunner().invoke(cli, list(args), obj=CliState())


def _refused(out, *words: str, code: int = 2) -> str:
    """The one error line of a refused command (exit ``code``, no traceback), holding every one of ``words``."""
    assert out.exit_code == code, out.output
    assert "Traceback" not in out.output, out.output
    assert out.exception is None or isinstance(out.exception, SystemExit), out.output
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("crossbench: error:"), out.stderr
    assert len(lines[0]) < 600, lines[0]
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def _snapshot(root: Path) -> dict[str, bytes | str]:
    """Every entry under ``root``: a file's bytes, a link's target, a FIFO's kind (never read)."""
    out: dict[str, bytes | str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = f"link:{os.readlink(p)}"
            elif p.is_fifo():
                out[rel] = "fifo"
            elif p.is_file():
                out[rel] = p.read_bytes()
            else:
                out[rel] = "dir"
    return out


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("folders")
    # the foreign experiment: another dataset (200 users), seed 1 (so its record's name is free in the folder)
    for name, extra in (("out", []), ("foreign", ["--dataset-param", "n_users=200", "--seeds", "1"])):
        res = _cli("run", "--model", "popularity", *SMALL, *extra, "--output", str(root / name))
        assert res.exit_code == 0, res.output
    return root


@pytest.fixture()
def folder(made: Path, tmp_path: Path) -> Path:
    target = tmp_path / "box" / "out"
    shutil.copytree(made / "out", target)
    (target / ".crossbench.lock").unlink(missing_ok=True)
    return target


def _edit(path: Path, change, *, reseal: bool = True) -> None:
    rec = json.loads(path.read_text())
    change(rec)
    if reseal:
        rec["seal"] = record_seal(rec)
    path.write_text(json.dumps(rec))


def _rerun(folder: Path, *extra: str):
    return _cli("run", "--model", "popularity", *SMALL, "--output", str(folder), *extra)


# ------------------------------------------------------------------------------ foreign and stale records


def test_a_foreign_record_is_refused_by_every_reader_and_never_reused(made: Path, folder: Path):
    shutil.copy(made / "foreign" / "runs" / "movies-popularity-seed1.json", folder / "runs")
    before = _snapshot(folder.parent)
    for out in (_cli("leaderboard", str(folder)), _cli("leaderboard", str(folder / "runs")), _cli("verify", "--no-data", str(folder)),
                _rerun(folder)):
        _refused(out, "another experiment", "movies-popularity-seed1.json")
    assert _snapshot(folder.parent) == before


def test_a_record_left_from_an_edited_experiment_json_is_not_finished_earlier(made: Path, folder: Path):
    # experiment.json replaced by another experiment's (the foreign one): the old records do not belong to it
    shutil.copy(made / "foreign" / "experiment.json", folder / "experiment.json")
    before = _snapshot(folder.parent)
    other = ["--dataset-param", "n_users=200", "--seeds", "1"]
    _refused(_cli("run", "--model", "popularity", *SMALL, *other, "--output", str(folder)), "another experiment", RECORD)
    _refused(_cli("verify", "--no-data", str(folder)), "another experiment")
    assert _snapshot(folder.parent) == before


def test_a_schema_1_record_is_matched_with_the_experiment_being_run(made: Path, folder: Path):
    def as_schema_1(rec):  # a record as crossbench wrote them before fingerprints and seals
        rec.update(schema=1)
        del rec["experiment_fingerprint"], rec["seal"]

    _edit(folder / "runs" / RECORD, as_schema_1, reseal=False)
    assert _cli("verify", "--no-data", str(folder)).exit_code == 0
    manifest = json.loads((folder / "experiment.json").read_text())  # its fingerprint replaced by another experiment's
    manifest["fingerprint"] = json.loads((made / "foreign" / "experiment.json").read_text())["fingerprint"]
    (folder / "experiment.json").write_text(json.dumps(manifest))
    before = _snapshot(folder.parent)
    other = ["--dataset-param", "n_users=200", "--seeds", "1"]
    _refused(_cli("run", "--model", "popularity", *SMALL, *other, "--output", str(folder)), "dataset", RECORD)
    assert _snapshot(folder.parent) == before


def test_verify_notices_a_replaced_fingerprint_and_a_dropped_column(made: Path, folder: Path):
    manifest = json.loads((folder / "experiment.json").read_text())
    manifest["fingerprint"] = json.loads((made / "foreign" / "experiment.json").read_text())["fingerprint"]
    (folder / "experiment.json").write_text(json.dumps(manifest))
    _refused(_cli("verify", "--no-data", str(folder)), "experiment.json", "edited")
    shutil.copy(made / "out" / "experiment.json", folder / "experiment.json")
    _edit(folder / "runs" / RECORD, lambda r: r["evaluation"]["columns"].pop())
    _refused(_cli("verify", "--no-data", str(folder)), "evaluation.columns")


def test_an_edited_fit_time_is_noticed_by_verify_and_reproduce(folder: Path):
    _edit(folder / "runs" / RECORD, lambda r: r["timings"].update(fit_s=r["timings"]["fit_s"] + 1.0), reseal=False)
    before = _snapshot(folder.parent)
    _refused(_cli("verify", "--no-data", str(folder)), "seal")
    _refused(_cli("reproduce", str(folder / "runs" / RECORD)), "seal")
    assert _snapshot(folder.parent) == before


@pytest.mark.parametrize("delta", [1e-14, -1e-14])
def test_a_metric_edited_by_1e_14_is_refused_even_with_its_seal_fixed(folder: Path, delta: float):
    def change(rec):
        rec["evaluation"]["metrics"]["ndcg@10"] += delta

    _edit(folder / "runs" / RECORD, change)
    _refused(_cli("verify", "--no-data", str(folder)), "ndcg@10", "edited")


def test_a_duplicated_record_is_refused_never_averaged_in(folder: Path):
    runs = folder / "runs"
    shutil.copy(runs / RECORD, runs / "movies-popularity-seed7.json")
    _refused(_cli("leaderboard", str(folder)), "under another file name")
    _edit(runs / "movies-popularity-seed7.json", lambda r: r.update(file="movies-popularity-seed7.json"))
    _refused(_cli("leaderboard", str(folder)), "the same run as")


def test_a_record_whose_per_user_file_is_missing_is_reported_and_rerun(folder: Path):
    (folder / "runs" / USERS).unlink()
    _refused(_cli("verify", "--no-data", str(folder)), "missing", "rerun")
    out = _rerun(folder)
    assert out.exit_code == 0, out.output
    assert (folder / "runs" / USERS).is_file()
    assert _cli("verify", "--no-data", str(folder)).exit_code == 0


# ------------------------------------------------------------------------------ paths, links, FIFOs, sizes


@pytest.mark.parametrize("path", ["../../outside.npz", "/etc/passwd", "sub/x.npz", ".."])
def test_a_per_user_path_that_leaves_the_folder_is_refused(folder: Path, path: str):
    (folder.parent.parent / "outside.npz").write_bytes((folder / "runs" / USERS).read_bytes())
    _edit(folder / "runs" / RECORD, lambda r: r["evaluation"]["per_user"].update(path=path))
    for out in (_cli("verify", "--no-data", str(folder)), _cli("leaderboard", str(folder))):
        _refused(out, "plain file name")


def test_a_fifo_or_device_record_is_refused_without_hanging(folder: Path):
    os.mkfifo(folder / "runs" / "x.json")
    signal.alarm(60)  # a reader blocked on the FIFO would hang the test: fail it instead
    try:
        _refused(_cli("leaderboard", str(folder)), "FIFO")
        _refused(_rerun(folder), "FIFO")
    finally:
        signal.alarm(0)
    (folder / "runs" / "x.json").unlink()
    (folder / "runs" / "x.json").symlink_to("/dev/zero")
    _refused(_cli("leaderboard", str(folder)), "symbolic link")
    (folder / "runs" / "x.json").unlink()
    (folder / "runs" / "x.json").symlink_to(folder / "runs" / RECORD)
    _refused(_cli("verify", "--no-data", str(folder)), "symbolic link")


def test_a_per_user_file_that_is_a_link_is_refused(folder: Path, tmp_path: Path):
    users = folder / "runs" / USERS
    shutil.move(users, tmp_path / "elsewhere.npz")
    users.symlink_to(tmp_path / "elsewhere.npz")
    _refused(_cli("verify", "--no-data", str(folder)), "symbolic link")


def test_a_record_of_100000_nested_arrays_is_refused(folder: Path):
    (folder / "runs" / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    _refused(_cli("leaderboard", str(folder)), "nested too deeply")
    (folder / "runs" / "deep.json").write_bytes(b" " * (9 << 20))
    _refused(_cli("leaderboard", str(folder)), "bytes")


def _fixed_up(folder: Path, data: bytes) -> None:
    users = folder / "runs" / USERS
    users.write_bytes(data)
    _edit(folder / "runs" / RECORD, lambda r: r["evaluation"]["per_user"].update(sha256=file_sha256(users)))


def test_a_per_user_file_replaced_by_text_or_pickles_is_refused(folder: Path):
    _fixed_up(folder, b"users,ndcg@10\n1,0.5\n")
    _refused(_cli("verify", "--no-data", str(folder)), "not a per-user file crossbench wrote")
    buf = io.BytesIO()
    np.savez(buf, users=np.arange(3), **{"ndcg@10": np.array([0.5, "x", None], dtype=object)})
    _fixed_up(folder, buf.getvalue())
    _refused(_cli("verify", "--no-data", str(folder)), "not a per-user file crossbench wrote")
    buf = io.BytesIO()
    np.savez(buf, users=np.arange(3), **{"ndcg@10": np.ones((3, 2))})
    _fixed_up(folder, buf.getvalue())
    _refused(_cli("verify", "--no-data", str(folder)), "wrong type or length")


def test_a_symlinked_lock_is_refused_and_its_target_untouched(folder: Path, tmp_path: Path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (folder / ".crossbench.lock").symlink_to(victim)
    before = _snapshot(folder.parent)
    _refused(_rerun(folder), ".crossbench.lock", "symbolic link")
    _refused(_rerun(folder, "--overwrite"), ".crossbench.lock", "symbolic link")
    assert victim.read_text() == "precious\n"
    assert _snapshot(folder.parent) == before


def test_overwrite_into_a_folder_whose_plots_is_a_link_is_refused(folder: Path, tmp_path: Path):
    shutil.move(folder / "plots", tmp_path / "real-plots")
    (folder / "plots").symlink_to(tmp_path / "real-plots")
    before, outside = _snapshot(folder.parent), _snapshot(tmp_path / "real-plots")
    _refused(_rerun(folder, "--overwrite"), "plots", "symbolic link")
    _refused(_cli("leaderboard", str(folder), "--output", str(folder / "leaderboard.md")), "symbolic link")
    assert _snapshot(folder.parent) == before and _snapshot(tmp_path / "real-plots") == outside


@pytest.mark.parametrize("tolerance", ["nan", "inf", "-1"])
def test_reproduce_refuses_a_tolerance_that_is_not_a_finite_non_negative_number(folder: Path, tolerance: str):
    _refused(_cli("reproduce", str(folder / "runs" / RECORD), "--tolerance", tolerance), "--tolerance")


def test_a_table_output_that_cannot_be_written_is_one_line(folder: Path):
    _refused(_cli("leaderboard", str(folder), "--output", "/proc/crossbench-x.md"), "cannot write", "/proc/")


@pytest.mark.parametrize("line", ["garbage", '{"op_code": 99}', '{"op_code": 0}', "null"])
def test_a_journal_with_a_damaged_line_is_one_line_and_nothing_written(tmp_path: Path, line: str):
    (tmp_path / "s.log").write_text(line + "\n")
    out = _cli("tune", "--model", "mf", *SMALL, "--trials", "2", "--storage", f"journal:{tmp_path}/s.log", "--output", str(tmp_path / "o"))
    _refused(out, "not a readable Optuna journal")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.log"]


# ------------------------------------------------------------------------------ tables


def test_labels_with_pipes_and_newlines_cannot_break_a_table(folder: Path):
    text = md_table([["a|b\nc\rd\x1be", "1"]], ["model", "x|y"])
    lines = text.splitlines()
    assert len(lines) == 3
    assert all(line.replace("\\|", "").count("|") == 3 for line in lines)
    assert "a\\|b c d e" in lines[2]

    def change(rec):
        rec["model"]["label"] = "evil | label\nwith a line"
    _edit(folder / "runs" / RECORD, change)
    rec = json.loads((folder / "runs" / RECORD).read_text())
    rec["_path"] = str(folder / "runs" / RECORD)
    table = [line for line in render_markdown([rec]).splitlines() if line.startswith("|")]
    assert len(table) == 3 and "evil \\| label with a line" in table[2]
    assert len({line.replace("\\|", "").count("|") for line in table}) == 1


# ------------------------------------------------------------------------------ studies


def _meta(budget: int = 3) -> dict:
    return {"crossbench:split_fingerprint": "f" * 64, "crossbench:objective": "ndcg@10", "crossbench:model": "mf",
            "crossbench:budget": Budget(budget, None).to_dict(), "crossbench:space": ["FloatParam(x)"], "crossbench:seed": 0}


def _open_in(spec, start, results) -> None:
    """One worker: wait for the other, then open the study as `crossbench tune` does; put its study id or error."""
    start.wait()
    try:
        results.put(open_study(spec, "exp/movies/seed0/mf", _meta(), pruner="none", defaults={"x": 0.5})._study_id)
    except Exception as exc:  # noqa: BLE001 - collected and asserted by the test
        results.put(f"{type(exc).__name__}: {exc}")


def _open_at_once(spec, how: str) -> list:
    """Two workers (forked processes, or threads with a storage connection each) open one new study at one instant."""
    if how == "processes":
        ctx = multiprocessing.get_context("fork")
        start, results = ctx.Barrier(2), ctx.Queue()
        workers = [ctx.Process(target=_open_in, args=(spec, start, results)) for _ in range(2)]
    else:
        start, results = threading.Barrier(2), queue.Queue()
        workers = [threading.Thread(target=_open_in, args=(spec, start, results)) for _ in range(2)]
    for w in workers:
        w.start()
    got = [results.get(timeout=120) for _ in workers]
    for w in workers:
        w.join()
    return got


@pytest.mark.parametrize(("kind", "how", "times"), [("journal", "processes", 20), ("journal", "threads", 20), ("sqlite", "threads", 4)])
def test_two_workers_opening_a_new_study_at_the_same_instant_always_share_it(tmp_path: Path, kind: str, how: str, times: int):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for i in range(times):
        where = tmp_path / str(i)
        where.mkdir()
        spec = resolve_storage(f"journal:{where}/s.log" if kind == "journal" else f"sqlite:///{where}/s.db", results_dir=where)
        got = _open_at_once(spec, how)
        assert all(isinstance(g, int) for g in got) and len(set(got)) == 1, f"start {i}: {got}"
        storage = open_storage(spec, heartbeat_interval=None)
        assert optuna.load_study(study_name="exp/movies/seed0/mf", storage=storage).user_attrs[META] == _meta()
    # a study made for another budget is still refused with one line
    with pytest.raises(Exception, match="another budget"):
        open_study(spec, "exp/movies/seed0/mf", _meta(budget=5), pruner="none")
    assert set(COMPARED) <= set(_meta())


def test_a_worker_is_gone_only_when_its_process_on_this_machine_is():
    here = this_worker()
    child = subprocess.Popen(["sleep", "30"])
    try:
        with open(f"/proc/{child.pid}/stat") as f:
            start = f.read().rpartition(")")[2].split()[19]
        alive = {**here, "pid": child.pid, "start": start}
        assert not worker_gone(alive, here=here)
        assert worker_gone({**alive, "start": str(int(start) + 1)}, here=here)  # the pid reused by a later process
        assert not worker_gone({**alive, "host": "elsewhere"}, here=here)  # a pid means nothing on another machine
    finally:
        child.kill()
        child.wait()
    assert worker_gone(alive, here=here)
    assert not worker_gone({**alive, "host": "elsewhere"}, here=here)
    assert not worker_gone(here, here=here)  # this process is not gone
    assert not worker_gone(None, here=here)


def _running_trial(study: optuna.Study, worker: dict) -> int:
    trial = study.ask()
    trial.suggest_float("x", 0.0, 1.0)
    trial.set_user_attr(WORKER, worker)
    trial.set_user_attr(HEARTBEAT, time.time())
    return trial.number


def test_a_dead_local_workers_trial_is_retried_at_once(tmp_path: Path):
    spec = resolve_storage(f"journal:{tmp_path}/s.log", results_dir=tmp_path)
    study = open_study(spec, "s", _meta(), pruner="none")
    child = subprocess.Popen(["true"])
    child.wait()
    dead = _running_trial(study, {**this_worker(), "pid": child.pid})
    remote = _running_trial(study, {**this_worker(), "host": "elsewhere", "pid": child.pid})
    # an hour's heartbeat: only the pid check can tell that the local worker is gone
    assert retry_stale(study, heartbeat_s=3600) == [dead]
    trials = study.get_trials(deepcopy=False)
    assert [t.user_attrs.get(RETRY_OF) for t in trials if t.state == TrialState.WAITING] == [dead]
    assert {t.number: t.state for t in trials}[remote] == TrialState.RUNNING


def test_a_resumed_study_says_what_it_waits_for_then_retries_the_silent_trial(tmp_path: Path):
    spec = resolve_storage(f"journal:{tmp_path}/s.log", results_dir=tmp_path)
    study = open_study(spec, "s", _meta(budget=1), pruner="none")
    lost = _running_trial(study, {**this_worker(), "host": "elsewhere", "pid": 1})
    lines: list[str] = []
    t0 = time.monotonic()
    optimize(study, lambda trial: trial.suggest_float("x", 0.0, 1.0), budget=Budget(1, None), heartbeat_s=1, poll_s=0.1,
             log=lines.append)
    waited = time.monotonic() - t0
    assert lines[0].startswith(f"s: waiting for trial {lost} of elsewhere:1 (retried if its heartbeat stays silent for another")
    assert any(f"trial(s) [{lost}] lost their worker" in line for line in lines)
    assert 1.0 <= waited < 60
    (done,) = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    assert done.user_attrs[RETRY_OF] == lost


def test_record_seal_is_the_sha256_of_the_canonical_record():
    rec = {"b": 1, "a": [1.5, None], "seal": "x", "_path": "p"}
    assert record_seal(rec) == hashlib.sha256(b'{"a":[1.5,null],"b":1}').hexdigest()
