"""Tuning storages: resolving ``--storage``, sharing a study between processes, heartbeats, plots."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import optuna
import pytest

from crossbench.errors import CrossbenchError
from crossbench.tune import storage as studies
from crossbench.tune.plots import param_importances, write_study_plots
from crossbench.tune.storage import StorageSpec, mask_password, open_storage, resolve_storage

ROOT = Path(__file__).resolve().parents[1]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

optuna.logging.set_verbosity(optuna.logging.WARNING)


# --- resolve_storage -----------------------------------------------------------------------------

def test_default_is_sqlite_file_in_results_dir(tmp_path: Path) -> None:
    spec = resolve_storage(None, results_dir=tmp_path / "results" / "exp")
    assert spec == StorageSpec(url=f"sqlite:///{tmp_path}/results/exp/tuning.db", kind="sqlite",
                               display=f"sqlite:///{tmp_path}/results/exp/tuning.db")
    assert spec.path == tmp_path / "results" / "exp" / "tuning.db"
    assert not (tmp_path / "results").exists()  # resolving writes nothing


def test_relative_default_results_dir_becomes_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_storage(None, results_dir=Path("out")).url == f"sqlite:///{tmp_path}/out/tuning.db"


@pytest.mark.parametrize("form", ["journal:{dir}/t.log", "journal:{dir}/studies", "{dir}/t.log", "{dir}/t.journal"])
def test_journal_forms(tmp_path: Path, form: str) -> None:
    text = form.format(dir=tmp_path)
    spec = resolve_storage(text, results_dir=tmp_path)
    path = text.removeprefix("journal:")
    assert spec == StorageSpec(url=f"journal:{path}", kind="journal", display=f"journal:{path}")
    assert spec.path == Path(path)


def test_relative_journal_path_becomes_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_storage("tune.log", results_dir=Path("x")).url == f"journal:{tmp_path}/tune.log"


def test_sqlite_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_storage(f"sqlite:///{tmp_path}/a.db", results_dir=tmp_path).url == f"sqlite:///{tmp_path}/a.db"
    rel = resolve_storage("sqlite:///rel.db", results_dir=tmp_path)
    assert (rel.url, rel.kind) == (f"sqlite:///{tmp_path}/rel.db", "sqlite")
    assert resolve_storage("sqlite:///:memory:", results_dir=tmp_path).url == "sqlite:///:memory:"


@pytest.mark.parametrize("url, used", [
    ("postgresql+psycopg2://tuner:s3cret@db.example:5432/studies", "postgresql+psycopg2://tuner:***@db.example:5432/studies"),
    ("postgresql://tuner:s3cret@db.example/studies", "postgresql+psycopg2://tuner:***@db.example/studies"),
    ("postgresql://tuner@db.example/studies", "postgresql+psycopg2://tuner@db.example/studies"),
])
def test_postgres_urls(url: str, used: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(studies, "_module_available", lambda name: name == "psycopg2")
    spec = resolve_storage(url, results_dir=tmp_path)
    assert spec.kind == "rdb"
    assert spec.display == used
    assert spec.url == used.replace("***", "s3cret")  # a bare postgresql:// names psycopg2 explicitly
    assert spec.path is None


def test_mysql_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(studies, "_module_available", lambda name: name == "pymysql")
    spec = resolve_storage("mysql://u:pw@host/db", results_dir=tmp_path)
    assert (spec.url, spec.kind, spec.display) == ("mysql+pymysql://u:pw@host/db", "rdb", "mysql+pymysql://u:***@host/db")


def test_mask_password() -> None:
    assert mask_password("postgresql://u:p@ss/w:rd@h:1/db?sslmode=require") == "postgresql://u:***@h:1/db?sslmode=require"
    assert mask_password("postgresql://u@h/db") == "postgresql://u@h/db"
    assert mask_password("sqlite:////tmp/a.db") == "sqlite:////tmp/a.db"


def _error(text: str, tmp_path: Path) -> str:
    with pytest.raises(CrossbenchError) as info:
        resolve_storage(text, results_dir=tmp_path)
    return str(info.value)


@pytest.mark.parametrize("text", ["redis://localhost", "postgres://u:pw@h/db", "tuning.db", "oracle://h/x", "sqlite+weird:///a.db"])
def test_unsupported_forms(text: str, tmp_path: Path) -> None:
    msg = _error(text, tmp_path)
    assert msg.startswith(f"unsupported tuning storage {mask_password(text)!r}; use journal:PATH")
    assert "sqlite:///PATH" in msg and "postgresql://USER:PASSWORD@HOST:PORT/DB" in msg and "mysql://" in msg
    assert "pw@" not in msg


def test_bad_paths(tmp_path: Path) -> None:
    msg = _error(f"journal:{tmp_path}/missing/t.log", tmp_path)
    assert msg == (f"the folder of tuning storage 'journal:{tmp_path}/missing/t.log' does not exist ({tmp_path}/missing); "
                   "create it first or choose another path")
    assert "does not exist" in _error(f"sqlite:///{tmp_path}/missing/t.db", tmp_path)
    (tmp_path / "d.log").mkdir()
    assert f"names a folder ({tmp_path}/d.log)" in _error(f"{tmp_path}/d.log", tmp_path)
    assert _error("journal:", tmp_path) == "tuning storage 'journal:' has no file path; write journal:PATH"
    assert _error("  ", tmp_path).startswith("empty tuning storage; use journal:PATH")
    assert "is not a SQLite URL" in _error("sqlite://host/a.db", tmp_path)


def test_missing_driver_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(studies, "_module_available", lambda name: False)
    assert _error("postgresql+psycopg2://u:pw@h/db", tmp_path) == (
        "tuning storage 'postgresql+psycopg2://u:***@h/db' needs the psycopg2 database driver, which is not installed; "
        "run `pip install psycopg2-binary`")
    assert "run `pip install psycopg2-binary`" in _error("postgresql://u:pw@h/db", tmp_path)
    assert "run `pip install mysqlclient`" in _error("mysql://u@h/db", tmp_path)


# --- open_storage --------------------------------------------------------------------------------

def test_open_default_creates_folder_and_has_heartbeats(tmp_path: Path) -> None:
    spec = resolve_storage(None, results_dir=tmp_path / "new")
    storage = open_storage(spec, heartbeat_interval=7)
    assert isinstance(storage, optuna.storages.RDBStorage)
    assert storage.get_heartbeat_interval() == 7
    assert (tmp_path / "new" / "tuning.db").is_file()


def test_sqlite_on_a_local_disk_uses_the_write_ahead_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlite3

    open_storage(resolve_storage(f"sqlite:///{tmp_path}/local.db", results_dir=tmp_path))
    assert sqlite3.connect(tmp_path / "local.db").execute("PRAGMA journal_mode").fetchone() == ("wal",)
    monkeypatch.setattr(studies, "_filesystem_type", lambda path: "nfs4")
    open_storage(resolve_storage(f"sqlite:///{tmp_path}/remote.db", results_dir=tmp_path))
    assert sqlite3.connect(tmp_path / "remote.db").execute("PRAGMA journal_mode").fetchone() == ("delete",)


def test_server_engine_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(studies, "_module_available", lambda name: True)
    pg = studies._engine_kwargs(resolve_storage("postgresql://u:pw@h/db", results_dir=tmp_path))
    assert pg["pool_pre_ping"] is True and pg["connect_args"]["options"] == "-c synchronous_commit=off"
    my = studies._engine_kwargs(resolve_storage("mysql+pymysql://u:pw@h/db", results_dir=tmp_path))
    assert my["pool_pre_ping"] is True and "options" not in my["connect_args"]


def test_open_journal_has_no_heartbeat(tmp_path: Path) -> None:
    storage = open_storage(resolve_storage(f"{tmp_path}/t.log", results_dir=tmp_path), heartbeat_interval=5)
    assert isinstance(storage, optuna.storages.JournalStorage)
    assert not optuna.storages._heartbeat.is_heartbeat_enabled(storage)


def test_connection_failure_names_display_form(tmp_path: Path) -> None:
    pytest.importorskip("psycopg2")
    spec = resolve_storage("postgresql+psycopg2://tuner:hunter2@127.0.0.1:1/studies", results_dir=tmp_path)
    with pytest.raises(CrossbenchError) as info:
        open_storage(spec)
    msg = str(info.value)
    assert msg.startswith("cannot open tuning storage 'postgresql+psycopg2://tuner:***@127.0.0.1:1/studies': ")
    assert "hunter2" not in msg and "check that the database is reachable" in msg


# --- several processes ---------------------------------------------------------------------------

def _python(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


WORKER = """
    import os, sys, time
    from pathlib import Path
    import optuna
    from crossbench.tune.storage import open_storage, resolve_storage
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(resolve_storage(sys.argv[1], results_dir=Path(".")))
    study = optuna.create_study(study_name="shared", storage=storage, load_if_exists=True)
    def objective(trial):
        trial.set_user_attr("pid", os.getpid())
        time.sleep(0.01)
        return trial.suggest_float("x", 0.0, 1.0) + trial.suggest_int("n", 1, 9)
    study.optimize(objective, n_trials=int(sys.argv[2]))
"""


@pytest.mark.slow  # two processes
def test_two_processes_share_one_journal_study(tmp_path: Path) -> None:
    journal = f"journal:{tmp_path}/shared.log"
    counts = (25, 18)
    workers = [_python(WORKER, journal, str(n)) for n in counts]
    for w in workers:
        out, _ = w.communicate(timeout=120)
        assert w.returncode == 0, out
    storage = open_storage(resolve_storage(journal, results_dir=tmp_path))
    trials = optuna.load_study(study_name="shared", storage=storage).get_trials()
    assert sorted(t.number for t in trials) == list(range(sum(counts)))
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    by_worker = sorted(sum(t.user_attrs["pid"] == w.pid for t in trials) for w in workers)
    assert by_worker == sorted(counts)


HANGING_WORKER = """
    import sys, time
    from pathlib import Path
    import optuna
    from crossbench.tune.storage import open_storage, resolve_storage
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(resolve_storage(sys.argv[1], results_dir=Path(".")), heartbeat_interval=1, grace_period=3)
    study = optuna.create_study(study_name="hb", storage=storage, load_if_exists=True)
    def objective(trial):
        trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        trial.suggest_categorical("dim", [16, 32, 64])
        Path(sys.argv[2]).write_text(str(trial.number))
        time.sleep(600)
    study.optimize(objective, n_trials=1)
"""


@pytest.mark.slow  # a worker process killed
def test_killed_worker_trial_fails_after_grace_and_is_retried(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/hb.db"
    ready = tmp_path / "ready"
    worker = _python(HANGING_WORKER, url, str(ready))
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert worker.poll() is None, worker.communicate()[0]
            assert time.monotonic() < deadline, "the worker never started its trial"
            time.sleep(0.05)
        time.sleep(1.2)  # at least one heartbeat recorded
    finally:
        os.kill(worker.pid, signal.SIGKILL)
        worker.communicate(timeout=30)
    storage = open_storage(resolve_storage(url, results_dir=tmp_path), heartbeat_interval=1, grace_period=3)
    study = optuna.load_study(study_name="hb", storage=storage)
    [stale] = study.get_trials()
    assert stale.state == optuna.trial.TrialState.RUNNING
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)  # within the grace period: left alone
        assert study.get_trials()[0].state == optuna.trial.TrialState.RUNNING
        deadline = time.monotonic() + 20
        while study.get_trials()[0].state == optuna.trial.TrialState.RUNNING:
            assert time.monotonic() < deadline, "the dead worker's trial was never failed"
            time.sleep(0.5)
            optuna.storages.fail_stale_trials(study)
    failed, retry = study.get_trials()
    assert failed.state == optuna.trial.TrialState.FAIL
    assert retry.state == optuna.trial.TrialState.WAITING
    assert retry.params == stale.params
    assert retry.system_attrs["failed_trial"] == stale.number
    # The next worker runs the retry first, with the same parameters.
    study.optimize(lambda t: t.params["lr"] * t.params["dim"], n_trials=1)
    done = study.get_trials()[1]
    assert done.state == optuna.trial.TrialState.COMPLETE and done.params == stale.params


# --- plots ---------------------------------------------------------------------------------------

def _study(n_trials: int, name: str) -> optuna.Study:
    study = optuna.create_study(direction="maximize", study_name=name, sampler=optuna.samplers.RandomSampler(seed=0))

    def objective(trial: optuna.Trial) -> float:
        lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        dim = trial.suggest_int("dim", 8, 128)
        trial.suggest_categorical("loss", ["bpr", "bce"])
        value = dim / 128 - abs(lr - 0.01) * 10
        if trial.number % 4 == 3:
            if trial.number % 8 == 3:
                trial.report(value, step=0)
            raise optuna.TrialPruned()
        return value

    study.optimize(objective, n_trials=n_trials)
    return study


def test_plots_are_pngs(tmp_path: Path) -> None:
    study = _study(16, "exp/movies/seed0/mf")
    paths = write_study_plots(study, tmp_path / "plots", stem=study.study_name)
    assert [p.name for p in paths] == ["exp-movies-seed0-mf-history.png", "exp-movies-seed0-mf-importance.png"]
    for p in paths:
        data = p.read_bytes()
        assert len(data) > 1000 and data.startswith(PNG_SIGNATURE)
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == sorted(p.name for p in paths)  # no temp files left
    importances = param_importances(study)
    assert set(importances) == {"lr", "dim", "loss"} and abs(sum(importances.values()) - 1) < 1e-9


def test_one_trial_study_skips_importance(tmp_path: Path) -> None:
    study = _study(1, "single")
    paths = write_study_plots(study, tmp_path, stem="single")
    assert paths == [tmp_path / "single-history.png"]
    assert paths[0].read_bytes().startswith(PNG_SIGNATURE)
    assert not (tmp_path / "single-importance.png").exists()


def test_study_without_parameters_skips_importance(tmp_path: Path) -> None:
    study = optuna.create_study()
    study.optimize(lambda t: 1.0, n_trials=3)
    assert [p.name for p in write_study_plots(study, tmp_path, stem="flat")] == ["flat-history.png"]
