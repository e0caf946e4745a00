"""Where tuning studies live.

``crossbench tune`` keeps one Optuna study per (target, seed, model) in a persistent storage so
that tuning can be resumed and shared by several worker processes. :func:`resolve_storage`
turns the ``--storage`` text into a validated :class:`StorageSpec` before any work starts;
:func:`open_storage` opens it. Pictures of a study are drawn by :mod:`crossbench.tune.plots`.

The storage forms:

- nothing: an embedded SQLite file ``RESULTS_DIR/tuning.db``;
- ``journal:PATH``, or a path ending in ``.log`` or ``.journal``: an Optuna journal file, for
  several processes on one machine (appends are serialised by an ``O_EXCL`` lock file);
- ``sqlite:///PATH``, ``postgresql://...``, ``postgresql+psycopg2://...``, ``mysql://...``:
  a relational database, for workers on one machine or many; Optuna's heartbeats, when asked
  for, fail a dead worker's trial and enqueue it again.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import random
import re
import sqlite3
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crossbench.errors import CrossbenchError

if TYPE_CHECKING:
    import optuna

#: The name of the default storage file inside the results folder.
DEFAULT_DB_NAME = "tuning.db"

#: Suffixes that make a plain path a journal file.
JOURNAL_SUFFIXES = (".log", ".journal")

ACCEPTED_FORMS = (
    "journal:PATH (or a path ending in .log or .journal), sqlite:///PATH, "
    "postgresql://USER:PASSWORD@HOST:PORT/DB, postgresql+psycopg2://..., mysql://... or mysql+pymysql://..."
)

# (dialect, driver) -> (module to import, what to pip install).
_DRIVERS: dict[tuple[str, str], tuple[str, str]] = {
    ("postgresql", "psycopg2"): ("psycopg2", "psycopg2-binary"),
    ("postgresql", "psycopg"): ("psycopg", "psycopg[binary]"),
    ("mysql", "mysqldb"): ("MySQLdb", "mysqlclient"),
    ("mysql", "pymysql"): ("pymysql", "pymysql"),
}
# A URL without a driver gets the first of these that is installed, written into the URL:
# SQLAlchemy's own default differs between versions (2.1 takes psycopg 3 for postgresql://).
_DEFAULT_DRIVERS: dict[str, tuple[str, ...]] = {"postgresql": ("psycopg2", "psycopg"), "mysql": ("mysqldb", "pymysql")}

# A server that drops idle connections (or a worker suspended for a while) must not break the
# next write: connections are checked before use and renewed after half an hour.
_SERVER_ENGINE_KWARGS: dict[str, Any] = {"pool_pre_ping": True, "pool_recycle": 1800}
# PostgreSQL sessions commit without waiting for the WAL flush: a trial costs ~19 commits, and
# waiting for each flush doubled the storage's cost per trial. A server crash can then lose
# the last fraction of a second of commits (never corrupt the database): at worst a trial's
# last update, whose trial the heartbeat check runs again.
_POSTGRES_CONNECT_ARGS: dict[str, Any] = {"connect_timeout": 10, "options": "-c synchronous_commit=off"}
_MYSQL_CONNECT_ARGS: dict[str, Any] = {"connect_timeout": 10}
# SQLite serialises writers with a file lock; wait for it rather than failing at once.
_SQLITE_LOCK_TIMEOUT_S = 60
# File systems on which SQLite's write-ahead log must not be used (it needs shared memory on one host).
_NETWORK_FILESYSTEMS = frozenset({
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "afs", "ceph", "glusterfs", "lustre", "gpfs", "beegfs",
    "fuse.sshfs", "fuse.glusterfs", "fuse.ceph", "fuse.s3fs", "fuse.gcsfuse",
})


def _filesystem_type(path: Path) -> str | None:
    """The type of the file system holding ``path`` (Linux ``/proc/mounts``), or ``None`` if unknown."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return None
    target = str(path.resolve())
    best, fstype = "", None
    for line in mounts:
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) > len(best):
            best, fstype = point, fields[2]
    return fstype


@dataclass(frozen=True)
class _SqliteConnector:
    """Opens the SQLite file: a lock timeout, and on a local disk the write-ahead log.

    WAL with ``synchronous=NORMAL`` syncs the disk at checkpoints rather than at every commit
    (about 5x cheaper per trial than SQLite's default rollback journal); a power cut can undo
    the last commits but not corrupt the file. On a network file system (where WAL is unsafe)
    the file keeps SQLite's default journal.
    """

    path: str
    wal: bool

    def __call__(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=_SQLITE_LOCK_TIMEOUT_S, check_same_thread=False)
        if self.wal:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
        return conn


def _engine_kwargs(spec: StorageSpec) -> dict[str, Any]:
    """SQLAlchemy engine settings for ``spec`` (see the notes above on each)."""
    if spec.kind == "sqlite":
        path = spec.path
        if path is None:  # :memory:
            return {}
        wal = _filesystem_type(path.parent) not in _NETWORK_FILESYSTEMS
        return {"creator": _SqliteConnector(str(path), wal)}
    connect_args = _POSTGRES_CONNECT_ARGS if spec.url.lower().startswith("postgresql") else _MYSQL_CONNECT_ARGS
    return {**_SERVER_ENGINE_KWARGS, "connect_args": dict(connect_args)}


@dataclass(frozen=True)
class StorageSpec:
    """A validated tuning storage.

    ``url`` is what Optuna opens (``sqlite:///ABSOLUTE``, a server URL, or ``journal:ABSOLUTE``
    for a journal file); ``kind`` is ``"sqlite"``, ``"journal"`` or ``"rdb"`` (a database
    server); ``display`` is the URL with any password replaced by ``***``, for messages and
    records.
    """

    url: str
    kind: str
    display: str

    @property
    def path(self) -> Path | None:
        """The file behind a ``sqlite`` or ``journal`` storage (``None`` for a server or ``:memory:``)."""
        if self.kind == "journal":
            return Path(self.url[len("journal:"):])
        if self.kind == "sqlite":
            rest = self.url[len("sqlite:///"):].partition("?")[0]
            return None if rest in ("", ":memory:") else Path(rest)
        return None


def mask_password(url: str) -> str:
    """``url`` with the password of its user part (``USER:PASSWORD@``) replaced by ``***``."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    authority_end = rest.find("?")
    at = rest.rfind("@", 0, authority_end if authority_end >= 0 else len(rest))
    if at < 0:
        return url
    user, colon, _password = rest[:at].partition(":")
    if not colon:
        return url
    return f"{scheme}://{user}:***{rest[at:]}"


def _module_available(name: str) -> bool:
    """Whether ``name`` can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _unsupported(shown: str) -> CrossbenchError:
    return CrossbenchError(f"unsupported tuning storage {shown!r}; use {ACCEPTED_FORMS}")


def _check_file_target(path: Path, *, what: str, shown: str) -> Path:
    """``path`` made absolute, after checking that its folder exists and it is not a folder itself."""
    path = path.expanduser().absolute()
    if path.is_dir():
        raise CrossbenchError(f"tuning storage {shown!r} names a folder ({path}); give a file path for the {what}")
    if not path.parent.is_dir():
        raise CrossbenchError(f"the folder of tuning storage {shown!r} does not exist ({path.parent}); create it first or choose another path")
    return path


def _journal(path_text: str, *, shown: str) -> StorageSpec:
    if not path_text.strip():
        raise CrossbenchError(f"tuning storage {shown!r} has no file path; write journal:PATH")
    path = _check_file_target(Path(path_text), what="journal file", shown=shown)
    return StorageSpec(url=f"journal:{path}", kind="journal", display=f"journal:{path}")


def _sqlite(text: str, *, shown: str) -> StorageSpec:
    rest = text.partition("://")[2]
    if rest and not rest.startswith("/"):
        raise CrossbenchError(f"tuning storage {shown!r} is not a SQLite URL; write sqlite:///RELATIVE/PATH or sqlite:////ABSOLUTE/PATH")
    file_part, q, query = rest[1:].partition("?")
    if file_part in ("", ":memory:"):
        url = f"sqlite:///:memory:{q}{query}"
        return StorageSpec(url=url, kind="sqlite", display=url)
    path = _check_file_target(Path(file_part), what="SQLite database", shown=shown)
    url = f"sqlite:///{path}{q}{query}"
    return StorageSpec(url=url, kind="sqlite", display=url)


def resolve_storage(text: str | None, *, results_dir: Path) -> StorageSpec:
    """Turn the ``--storage`` text into a validated :class:`StorageSpec`; nothing is opened or written.

    ``None`` gives the embedded SQLite file ``results_dir / "tuning.db"`` (its folder is created
    when the storage is opened). A journal path or SQLite file must be in an existing folder; a
    server URL's database driver must be installed; a URL without one (``postgresql://``,
    ``mysql://``) gets psycopg2 (or psycopg) and MySQLdb (or PyMySQL), named in ``url``.
    Anything else is a :class:`CrossbenchError` naming the value (password masked) and the
    accepted forms.
    """
    if text is None:
        path = (Path(results_dir).expanduser().absolute() / DEFAULT_DB_NAME)
        url = f"sqlite:///{path}"
        return StorageSpec(url=url, kind="sqlite", display=url)
    text = text.strip()
    shown = mask_password(text)
    if not text:
        raise CrossbenchError(f"empty tuning storage; use {ACCEPTED_FORMS}")
    if text.lower().startswith("journal:"):
        return _journal(text[len("journal:"):], shown=shown)
    if "://" not in text:
        if text.lower().endswith(JOURNAL_SUFFIXES):
            return _journal(text, shown=shown)
        raise _unsupported(shown)
    scheme = text.partition("://")[0].lower()
    dialect, _, driver = scheme.partition("+")
    if not re.fullmatch(r"[a-z0-9]+", dialect) or (driver and not re.fullmatch(r"[a-z0-9_]+", driver)):
        raise _unsupported(shown)
    if dialect == "sqlite":
        if driver not in ("", "pysqlite"):
            raise _unsupported(shown)
        return _sqlite(text, shown=shown)
    if not driver and dialect in _DEFAULT_DRIVERS:
        candidates = _DEFAULT_DRIVERS[dialect]
        driver = next((d for d in candidates if _module_available(_DRIVERS[(dialect, d)][0])), candidates[0])
        text = f"{dialect}+{driver}://" + text.partition("://")[2]
        shown = mask_password(text)
    if (dialect, driver) not in _DRIVERS:
        raise _unsupported(shown)
    module, package = _DRIVERS[(dialect, driver)]
    if not _module_available(module):
        raise CrossbenchError(f"tuning storage {shown!r} needs the {module} database driver, which is not installed; run `pip install {package}`")
    if not text.partition("://")[2].strip("/"):
        raise CrossbenchError(f"tuning storage {shown!r} names no server or database; write {dialect}://USER:PASSWORD@HOST:PORT/DB")
    return StorageSpec(url=text, kind="rdb", display=shown)


def _first_line(exc: BaseException) -> str:
    """The first line of an exception's message, preferring a database driver's own error."""
    inner = getattr(exc, "orig", None) or exc
    lines = [line.strip() for line in str(inner).splitlines() if line.strip()]
    return lines[0] if lines else type(inner).__name__


# Workers started together on a fresh database all create Optuna's tables; the losers of that
# race (a duplicate type or row, a locked SQLite file) try again and find the tables made.
_CREATE_ATTEMPTS = 6
_RACE_MARKERS = ("already exists", "duplicate", "database is locked", "deadlock", "unique constraint")


def _lost_creation_race(exc: BaseException) -> bool:
    import sqlalchemy.exc

    text = str(getattr(exc, "orig", None) or exc).lower()
    return isinstance(exc, sqlalchemy.exc.IntegrityError) or any(marker in text for marker in _RACE_MARKERS)


def _retry_callback(max_retry: int) -> Any:
    """Optuna's callback that re-enqueues a heartbeat-stale trial with the same parameters."""
    import optuna

    cls = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)  # Optuna >= 4.9
    if cls is None:
        cls = optuna.storages.RetryFailedTrialCallback
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # experimental-API warnings
        return cls(max_retry=max_retry)


def open_storage(
    spec: StorageSpec,
    *,
    heartbeat_interval: int | None = 60,
    grace_period: int | None = None,
    max_retry: int = 2,
) -> optuna.storages.BaseStorage:
    """Open ``spec`` as an Optuna storage; a failure is a :class:`CrossbenchError` naming ``spec.display``.

    SQLite and database servers (``kind`` ``"sqlite"``/``"rdb"``) open as
    :class:`optuna.storages.RDBStorage`. With ``heartbeat_interval`` (seconds) every running trial
    records a heartbeat; a RUNNING trial whose last heartbeat is older than ``grace_period``
    (default: twice the interval) is failed by the next worker that asks for a trial (Optuna's
    ``fail_stale_trials``, run by ``Study.optimize`` before each trial) and re-enqueued, with the
    same parameters, as a WAITING trial up to ``max_retry`` times (Optuna's
    ``RetryHeartbeatStaleTrialCallback``; ``0`` fails without retrying). Heartbeats are recorded by
    ``Study.optimize`` only: a loop built on ``Study.ask``/``Study.tell`` must call
    ``storage.record_heartbeat(trial._trial_id)`` itself, or its trials are never found stale.
    Server connections are checked before each use and recycled every 30 minutes, so workers on
    other machines survive a server restart or idle-connection timeouts; PostgreSQL sessions
    commit asynchronously (``synchronous_commit=off``: a server crash may lose the last fraction
    of a second of commits, never corrupt). A SQLite file on a local disk uses the write-ahead
    log with ``synchronous=NORMAL``. Workers that open a fresh database at the same moment race
    to create Optuna's tables; the losers retry.

    A journal file (``kind`` ``"journal"``) opens as :class:`optuna.storages.JournalStorage` over
    a :class:`~optuna.storages.journal.JournalFileBackend` with a
    :class:`~optuna.storages.journal.JournalFileOpenLock` (an ``O_EXCL`` lock file, released
    by force after 30 s if its holder died). Optuna 5's journal storage has **no heartbeat**: it
    does not implement ``BaseHeartbeat``, so ``heartbeat_interval``, ``grace_period`` and
    ``max_retry`` are ignored, and a trial whose worker died stays RUNNING for ever; whoever
    runs the tuning loop must notice and retry such trials some other way.
    """
    import optuna

    if heartbeat_interval is not None and heartbeat_interval < 1:
        raise CrossbenchError(f"the heartbeat interval must be at least 1 second, got {heartbeat_interval}")
    if grace_period is not None and grace_period < 1:
        raise CrossbenchError(f"the heartbeat grace period must be at least 1 second, got {grace_period}")
    if spec.kind == "journal":
        return _open_journal(spec)
    if spec.kind not in ("sqlite", "rdb"):
        raise CrossbenchError(f"unknown tuning storage kind {spec.kind!r} for {spec.display!r}; expected sqlite, journal or rdb")
    if spec.path is not None:
        try:
            spec.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CrossbenchError(f"cannot create the folder of tuning storage {spec.display!r}: {exc.strerror or exc}") from None
    import sqlalchemy.exc

    kwargs: dict[str, Any] = {"engine_kwargs": _engine_kwargs(spec)}
    if heartbeat_interval is not None:
        kwargs["heartbeat_interval"] = heartbeat_interval
        kwargs["grace_period"] = grace_period
        callback_arg = "heartbeat_stale_trial_callback"  # Optuna >= 4.9; earlier: failed_trial_callback
        if callback_arg not in inspect.signature(optuna.storages.RDBStorage.__init__).parameters:
            callback_arg = "failed_trial_callback"
        kwargs[callback_arg] = _retry_callback(max_retry)
    try:
        for attempt in range(1, _CREATE_ATTEMPTS + 1):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    return optuna.storages.RDBStorage(spec.url, **kwargs)
            except sqlalchemy.exc.SQLAlchemyError as exc:
                if attempt == _CREATE_ATTEMPTS or not _lost_creation_race(exc):
                    raise
                time.sleep(random.uniform(0.1, 0.4) * attempt)
        raise AssertionError("unreachable")
    except (sqlalchemy.exc.SQLAlchemyError, ImportError, OSError) as exc:
        reason = _first_line(exc).replace(spec.url, spec.display)
        raise CrossbenchError(f"cannot open tuning storage {spec.display!r}: {reason}; check that the database is reachable and the URL is right") from None
    except RuntimeError as exc:  # Optuna's table-schema version check
        raise CrossbenchError(f"cannot use tuning storage {spec.display!r}: {_first_line(exc)}; "
                              f"run `optuna storage upgrade --storage URL` or use another storage") from None


def _check_journal_lines(path: Path) -> None:
    """Raise ``ValueError`` at the first complete line of ``path`` that is not a JSON object (Optuna defers an
    undecodable last line, maybe half-written, so a damaged one would surface mid-study)."""
    if not path.is_file():
        return
    with open(path, "rb") as f:
        for number, line in enumerate(f, start=1):
            if not line.endswith(b"\n"):
                return  # being written by a worker right now
            if not line.lstrip().startswith(b"{") or not isinstance(json.loads(line), dict):  # ValueError if not JSON
                raise ValueError(f"line {number} is not a journal record")


def _open_journal(spec: StorageSpec) -> optuna.storages.BaseStorage:
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    path = spec.path
    assert path is not None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _check_journal_lines(path)
        backend = JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path)))
        storage = optuna.storages.JournalStorage(backend)
        storage.get_all_studies()  # read the whole journal now: a damaged line is refused here, not mid-study
        return storage
    except OSError as exc:
        raise CrossbenchError(f"cannot open tuning journal {spec.display!r}: {exc.strerror or exc}; check the path and its permissions") from None
    except (ValueError, KeyError, TypeError, AssertionError) as exc:  # a line that is not a journal record (or an unknown operation)
        raise CrossbenchError(f"tuning journal {spec.display!r} is not a readable Optuna journal ({_first_line(exc)[:120]}); "
                              "use another file") from None
