"""Run records: one JSON document per (model, seed, target), written atomically."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import resource
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crossbench.errors import CrossbenchError
from crossbench.files import write_bytes_atomic
from crossbench.version import __version__

if TYPE_CHECKING:
    from crossbench.evaluate.peruser import PerUserFiles

#: the schema records are written with (see :mod:`crossbench.records.schema`; schema 1 is still read)
SCHEMA_VERSION = 2


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write ``payload`` as JSON to ``path`` atomically."""
    text = json.dumps(payload, indent=2, sort_keys=True, default=_jsonable) + "\n"
    write_bytes_atomic(path, text.encode("utf-8"))


def json_value(payload: Any) -> Any:
    """``payload`` as it reads back from the JSON :func:`write_json_atomic` writes (tuples as lists, paths as text)."""
    return json.loads(json.dumps(payload, default=_jsonable))


def write_record(path: Path, record: dict[str, Any]) -> None:
    """Write a run record atomically, with its ``seal`` (:func:`crossbench.records.schema.record_seal`)
    computed over exactly what is written."""
    from crossbench.records.schema import record_seal

    body = json_value({k: v for k, v in record.items() if k != "seal"})
    record["seal"] = body["seal"] = record_seal(body)
    write_json_atomic(path, body)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "to_dict"):
        return value.to_dict()
    return repr(value)


def git_commit() -> str | None:
    """The commit of the crossbench checkout, if it is one."""
    here = Path(__file__).resolve().parents[1]  # the crossbench package
    try:
        out = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def reset_peak_rss() -> str:
    """Start a new peak-memory measurement; return its scope.

    On Linux, writing 5 to ``/proc/self/clear_refs`` resets the peak resident set (VmHWM) to the
    current one, so the next :func:`peak_rss_mb` is the peak of what ran since: ``"run"``.
    Elsewhere the peak is the process's since it started: ``"process"``.
    """
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return "run"
    except OSError:
        return "process"


def peak_rss_mb() -> float:
    """Peak resident memory in MiB since the last :func:`reset_peak_rss` (Linux), else of the process."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux), else the platform's processor string."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> dict[str, Any]:
    """Versions of the interpreter and the main libraries."""
    import numpy
    import pandas
    import torch

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "pandas": pandas.__version__,
        "crossbench": __version__,
        "git_commit": git_commit(),
        "cpu": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }


def run_key(record: dict[str, Any]) -> str:
    """What identifies a run: two records with the same key are the same run (one is a copy)."""
    ev, p = record["evaluation"], record["protocol"]
    return json.dumps([record["dataset"]["name"], record["dataset"]["fingerprint"], p["name"], p["params"], p["target"],
                       p["split_fingerprint"], record["seed"], record["model"]["label"], ev["mode"], ev.get("sampling")],
                      sort_keys=True, default=repr)


def _folder_records(folder: Path) -> tuple[list[Path], dict[str, Any] | None]:
    """The record files of a results folder (``runs/*.json``) and its manifest, if it has one."""
    from crossbench.records.safe import check_not_link
    from crossbench.records.schema import MANIFEST, read_manifest

    check_not_link(folder / "runs", what="runs folder")
    return sorted((folder / "runs").glob("*.json")), read_manifest(folder / MANIFEST)


def load_records(paths: Iterable[Path], *, verify: bool = True, files: PerUserFiles | None = None) -> list[dict[str, Any]]:
    """Read run records from files or folders (``runs/*.json`` inside a results folder).

    Each record is checked against the schema (:mod:`crossbench.records.schema`); with ``verify``
    (the default) its means are also recomputed from its sha-checked per-user file, and a
    record that disagrees is refused with one line. Pass the ``files`` the tables will read
    too, so that each per-user file is read once. A results folder's records must belong to
    the experiment of its ``experiment.json`` (:func:`crossbench.records.schema.check_belongs`);
    the same run twice (a copy) is refused.
    """
    from crossbench.records.schema import MANIFEST, check_belongs, read_record, verify_record

    paths = list(paths)
    records = []
    seen: dict[str, str] = {}
    for p in paths:
        manifest = None
        if p.is_dir() and (p / "runs").is_dir():  # a results folder: beside runs/ lie experiment.json and the tables
            found, manifest = _folder_records(p)
        elif p.is_dir() and p.name == "runs" and os.path.lexists(p.parent / MANIFEST):  # its runs/ named alone
            found, manifest = _folder_records(p.parent)
        else:
            found = sorted(p.glob("*.json")) if p.is_dir() else [p]
        for f in found:
            rec = read_record(f, schema=SCHEMA_VERSION)
            if manifest is not None:
                check_belongs(rec, manifest=manifest, where=f"run record {f}")
            if verify:
                verify_record(rec, where=f"run record {f}", files=files)
            key = run_key(rec)
            if key in seen:
                raise CrossbenchError(f"run record {f}: the same run as {seen[key]} (model {rec['model']['label'][:60]!r}, "
                                      f"seed {rec['seed']}, target {rec['protocol']['target'][:40]!r}); a run is counted once — remove the copy")
            seen[key] = str(f)
            records.append(rec)
    if not records:
        raise CrossbenchError(f"no run records found in {', '.join(map(str, paths))}")
    return records
