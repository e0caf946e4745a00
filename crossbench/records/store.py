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

SCHEMA_VERSION = 1


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write ``payload`` as JSON to ``path`` atomically."""
    text = json.dumps(payload, indent=2, sort_keys=True, default=_jsonable) + "\n"
    write_bytes_atomic(path, text.encode("utf-8"))


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


def load_records(paths: Iterable[Path], *, verify: bool = True, files: PerUserFiles | None = None) -> list[dict[str, Any]]:
    """Read run records from files or folders (``runs/*.json`` inside a results folder).

    Each record is checked against the schema (:mod:`crossbench.records.schema`); with ``verify``
    (the default) its means are also recomputed from its sha-checked per-user file, and a
    record that disagrees is refused with one line. Pass the ``files`` the tables will read
    too, so that each per-user file is read once.
    """
    from crossbench.records.schema import read_record, verify_record

    records = []
    for p in paths:
        # a results folder's records are in runs/ (beside them lie experiment.json and the tables)
        found = (sorted(p.glob("runs/*.json")) if (p / "runs").is_dir() else sorted(p.glob("*.json"))) if p.is_dir() else [p]
        for f in found:
            rec = read_record(f, schema=SCHEMA_VERSION)
            if verify:
                verify_record(rec, where=f"run record {f}", files=files)
            records.append(rec)
    if not records:
        raise CrossbenchError(f"no run records found in {', '.join(map(str, paths))}")
    return records
