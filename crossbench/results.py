"""Run records: one JSON document per (model, seed, target), written atomically."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import crossbench
from crossbench.errors import CrossbenchError
from crossbench.files import file_sha256 as file_sha256  # re-exported: records name their files by hash

SCHEMA_VERSION = 1


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write ``payload`` as JSON to ``path`` through a temporary file and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(payload, f, indent=2, sort_keys=True, default=_jsonable)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
    here = Path(crossbench.__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


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
        "crossbench": crossbench.__version__,
        "git_commit": git_commit(),
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }


def load_records(paths: Iterable[Path]) -> list[dict[str, Any]]:
    """Read run records from files or folders (``runs/*.json`` inside a results folder)."""
    records = []
    for p in paths:
        # a results folder's records are in runs/ (beside them lie experiment.json and the tables)
        files = (sorted(p.glob("runs/*.json")) if (p / "runs").is_dir() else sorted(p.glob("*.json"))) if p.is_dir() else [p]
        for f in files:
            try:
                rec = json.loads(f.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as exc:
                raise CrossbenchError(f"run record {f}: cannot read it ({exc})") from exc
            if not isinstance(rec, dict) or rec.get("schema") != SCHEMA_VERSION:
                raise CrossbenchError(f"run record {f}: not a crossbench run record of schema {SCHEMA_VERSION}")
            rec["_path"] = str(f)
            records.append(rec)
    if not records:
        raise CrossbenchError(f"no run records found in {', '.join(map(str, paths))}")
    return records
