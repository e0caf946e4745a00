"""A results folder: one experiment's run records, kept as each run finishes, behind a lock.

Layout::

    DIR/experiment.json     the experiment and its fingerprint (what the records belong to)
    DIR/runs/*.json         one record per finished (target, seed, model) run
    DIR/runs/*.users.npz    its per-user metric values
    DIR/runs/experiment.toml  the experiment as a file (``crossbench reproduce`` reruns a row from it)
    DIR/leaderboard.md      the table, rebuilt from the records after every run command
    DIR/leaderboard.csv     the same numbers as CSV, and as JSON in leaderboard.json
    DIR/plots/*.png         metric@K curves and results by user group, per table section;
                            *-curves.png: each model's validation metric and training loss per epoch
    DIR/pairwise.md         every model against every other
    DIR/tuning.db           Optuna studies (default tuning storage)
    DIR/studies/*.png       optimisation history and parameter importances per study

A record is written last, atomically, so its presence means the run finished. Rerunning the
same experiment into the folder skips finished runs; another experiment is refused unless
``overwrite``. A lock (``flock``, released by the kernel when the process dies) keeps a second
run out while one is going; temporary files that dead runs left are removed by the next run.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from crossbench.errors import CrossbenchError
from crossbench.files import file_sha256, probe_folder, umask_mode, write_text_atomic
from crossbench.records.safe import check_not_link, check_regular, read_json, refuse_kind
from crossbench.records.schema import MANIFEST, check_belongs, check_record, per_user_path, read_manifest, read_record
from crossbench.records.store import SCHEMA_VERSION, write_json_atomic

#: the experiment as a TOML file, inside runs/ beside the records
EXPERIMENT_FILE = "experiment.toml"
LOCK = ".crossbench.lock"
#: what ``overwrite`` removes; any other file in the folder (an experiment.toml, notes) stays
MANAGED = (MANIFEST, "runs", "leaderboard.md", "pairwise.md", "leaderboard.csv", "leaderboard.json", "plots",
           "tuning.db", "tuning.db-wal", "tuning.db-shm", "studies")


class ResultsFolder:
    """The results folder of one experiment."""

    def __init__(self, path: Path, *, experiment: dict[str, Any] | None = None,
                 extends: list[dict[str, Any]] | None = None) -> None:
        """``experiment``: the experiment being run, as its manifest holds it (JSON values); schema 1
        records, which carry no fingerprint, are matched with it rather than with the manifest on disk.
        ``extends``: when the experiment being run adds models to the folder's, the earlier forms of the
        experiment whose records stay (:func:`crossbench.experiment.extend.extension`)."""
        self.path = Path(path)
        self.runs = self.path / "runs"
        self.experiment = experiment
        self.extends = list(extends or [])
        self._lock_file: IO[str] | None = None

    def _claimed(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """What the records must belong to: the manifest, with the experiment being run when it is known
        and the earlier forms of the experiment when it is being extended."""
        claimed = manifest if self.experiment is None else {**manifest, "experiment": self.experiment}
        return {**claimed, "extends": self.extends} if self.extends else claimed

    def _accepts(self, saved: str, fingerprint: str) -> bool:
        """Whether the folder's experiment ``saved`` may take the runs of the experiment ``fingerprint``."""
        return saved == fingerprint or any(e["fingerprint"] == saved for e in self.extends)

    # -- checks before any work ----------------------------------------------------------

    def check(self, fingerprint: str, *, overwrite: bool) -> None:
        """Refuse a folder that is a file, holds symbolic links where crossbench writes, or holds another
        experiment's results or records (unless ``overwrite``, which replaces them)."""
        if self.path.exists() and not self.path.is_dir():
            raise CrossbenchError(f"--output {self.path} is an existing file, not a folder; choose a folder")
        for name in (*MANAGED, LOCK):
            check_not_link(self.path / name, what=f"results folder entry {name!r}:")
        self._probe_writable()
        if overwrite or not any(self.runs.glob("*.json")):
            return  # nothing finished here yet: whatever manifest lies here is replaced
        try:
            manifest = read_manifest(self.path / MANIFEST)
        except CrossbenchError:
            manifest = None
        if manifest is None:
            raise CrossbenchError(
                f"results folder {self.path} holds run records of an unknown experiment (no readable {MANIFEST}); "
                "choose another --output, or pass --overwrite to replace them"
            )
        saved = manifest["fingerprint"]
        if not self._accepts(saved, fingerprint):
            raise CrossbenchError(
                f"results folder {self.path} holds the results of another experiment (fingerprint "
                f"{saved[:12]}, this one {fingerprint[:12]}; only adding models keeps them); choose another "
                "--output, or pass --overwrite to replace them"
            )
        self._check_records(manifest)

    def _check_records(self, manifest: dict[str, Any]) -> None:
        """Refuse a record that is not a regular file or is of another experiment; damaged ones are rerun."""
        for f in sorted(self.runs.glob("*.json")):
            check_regular(f, what="run record")
            try:
                rec = read_json(f, what="run record")
                check_record(rec, where=f"run record {f}", schema=SCHEMA_VERSION)
            except CrossbenchError:
                continue  # unreadable or damaged: not finished, so its run is done again and replaces it
            check_belongs(rec, manifest=self._claimed(manifest), where=f"run record {f}")

    def _probe_writable(self) -> None:
        """Create the folder and a file in it, then remove what the probe created: bad places fail before any work."""
        try:
            probe_folder(self.path)
        except OSError as exc:
            raise CrossbenchError(
                f"results folder {self.path}: cannot write there ({exc.strerror or exc}); choose a writable folder with --output"
            ) from None

    # -- while holding the lock ----------------------------------------------------------

    @contextmanager
    def locked(self, *, wait_s: float = 0.0) -> Iterator[None]:
        """Hold the folder's lock; a second holder is refused with one line naming the first's pid
        (after waiting up to ``wait_s`` seconds for the first to let go).

        A folder this creates and that holds nothing but the lock when the block fails is removed again.
        """
        created = not self.path.exists()
        new_parents = [p for p in self.path.parents if not p.exists()]
        self.path.mkdir(parents=True, exist_ok=True)
        f = self._open_lock()
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                busy = exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK)
                if busy and time.monotonic() < deadline:
                    time.sleep(0.2)
                    continue
                f.seek(0)
                holder = f.read().strip() or "unknown"
                f.close()
                if busy:
                    raise CrossbenchError(
                        f"results folder {self.path} is in use by another crossbench run (pid {holder}); "
                        "wait for it to finish, or choose another --output"
                    ) from None
                raise
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        self._lock_file = f
        try:
            yield
        except BaseException:
            if created and {p.name for p in self.path.iterdir()} <= {LOCK, "runs"} and not any(self.runs.iterdir() if self.runs.is_dir() else ()):
                shutil.rmtree(self.path, ignore_errors=True)
                for p in new_parents:  # deepest first; a parent another run has filled since stays
                    try:
                        p.rmdir()
                    except OSError:
                        break
            raise
        finally:
            self._lock_file = None
            fcntl.flock(f, fcntl.LOCK_UN)
            f.close()

    def _open_lock(self) -> IO[str]:
        """The lock file, opened without following a symbolic link and only when it is a regular file."""
        path = self.path / LOCK
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, umask_mode())
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise refuse_kind(path, stat.S_IFLNK, what="results folder lock") from None
            raise CrossbenchError(f"results folder lock {path}: cannot open it ({exc.strerror or exc})") from None
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            os.close(fd)
            raise refuse_kind(path, mode, what="results folder lock")
        return os.fdopen(fd, "a+", encoding="utf-8")

    def prepare(self, *, fingerprint: str, overwrite: bool) -> None:
        """Under the lock: re-check, clear on ``overwrite``, remove dead runs' leftovers."""
        self._require_lock()
        if overwrite:
            for name in MANAGED:
                target = self.path / name
                check_not_link(target, what=f"results folder entry {name!r}:")
                if target.is_dir():
                    shutil.rmtree(target)
                elif target.exists():
                    target.unlink()
        else:
            self.check(fingerprint, overwrite=False)
        self.remove_leftovers()

    def write_manifest(self, *, fingerprint: str, manifest: dict[str, Any], experiment_toml: str | None = None) -> None:
        """Say which experiment the records belong to (before the first record is written).

        ``experiment_toml``, the experiment as a file, is kept as ``runs/experiment.toml``.
        """
        self._require_lock()
        if experiment_toml is not None and (self.extends or not (self.runs / EXPERIMENT_FILE).is_file()):
            write_text_atomic(self.runs / EXPERIMENT_FILE, experiment_toml)  # an extended experiment replaces it
        path = self.path / MANIFEST
        try:
            if (read_manifest(path) or {}).get("fingerprint") == fingerprint:
                return
        except CrossbenchError:
            pass
        extends = {"extends": self.extends} if self.extends else {}
        write_json_atomic(path, {**manifest, **extends, "fingerprint": fingerprint, "schema": SCHEMA_VERSION})

    def remove_leftovers(self) -> list[Path]:
        """Temporary files and staging folders of runs that died (only safe under the lock)."""
        self._require_lock()
        gone: list[Path] = []
        patterns = [(self.path, ".*.tmp"), (self.runs, ".*.tmp"), (self.path, ".old-runs-*"), (self.path, ".staging-*"),
                    (self.path.parent, f".{self.path.name}.staging-*")]
        for folder, pattern in patterns:
            if not folder.is_dir():
                continue
            for p in folder.glob(pattern):
                if p.is_dir():
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    p.unlink(missing_ok=True)
                gone.append(p)
        return gone

    def finished(self, file: str, *, fingerprint: str) -> bool:
        """True when ``runs/file`` is a readable record of the experiment ``fingerprint`` whose per-user
        file (a regular file) matches its sha256."""
        path = self.runs / file
        try:
            manifest = read_manifest(self.path / MANIFEST)
            rec = read_record(path, schema=SCHEMA_VERSION)
            if manifest is None or not self._accepts(manifest["fingerprint"], fingerprint):
                return False
            check_belongs(rec, manifest=self._claimed(manifest), where=str(path))
            users = per_user_path(rec, record_dir=self.runs)
            check_regular(users, what="per-user file")
            return bool(file_sha256(users) == rec["evaluation"]["per_user"]["sha256"])
        except (CrossbenchError, OSError):
            return False

    def _require_lock(self) -> None:
        if self._lock_file is None:
            raise RuntimeError("ResultsFolder: this needs the folder's lock; use `with folder.locked():`")
