"""A table built from several results folders, kept where none of them is: its ``sources.json``.

``crossbench leaderboard A B --output DIR/leaderboard.md`` writes, beside the table, the folders
it was built from (paths relative to ``DIR``), so that ``crossbench verify DIR`` can check a
combined table (e.g. an agreement report between two protocols' boards) as it checks a results
folder: every record of every source verified, each source's manifest checked, and the table,
CSV, JSON and plots regenerated and compared.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from crossbench.errors import CrossbenchError
from crossbench.files import write_text_atomic
from crossbench.records.safe import read_json

SOURCES = "sources.json"


def is_results_folder(path: Path) -> bool:
    return path.is_dir() and (path / "runs").is_dir()


def write_sources(folder: Path, paths: Sequence[Path]) -> bool:
    """Record ``paths`` in ``folder/sources.json`` when they are all results folders other than ``folder``
    itself; returns whether it was written."""
    folder = Path(folder)
    if not paths or not all(is_results_folder(p) for p in paths) or any(p.resolve() == folder.resolve() for p in paths):
        return False
    body = {"sources": [os.path.relpath(p.resolve(), folder.resolve()) for p in paths]}
    write_text_atomic(folder / SOURCES, json.dumps(body, indent=1) + "\n")
    return True


def read_sources(folder: Path) -> list[Path] | None:
    """The results folders a combined table in ``folder`` was built from (``None`` without ``sources.json``)."""
    path = Path(folder) / SOURCES
    if not os.path.lexists(path):
        return None
    body = read_json(path, what="table sources")
    items = body.get("sources") if isinstance(body, dict) else None
    if not isinstance(items, list) or not items or not all(isinstance(s, str) for s in items):
        raise CrossbenchError(f"{path}: not a list of results folders under 'sources'; rebuild the table with "
                              "`crossbench leaderboard FOLDER... --output` to rewrite it")
    out = [Path(os.path.normpath(Path(folder) / s)) for s in items]
    missing = [str(p) for p in out if not is_results_folder(p)]
    if missing:
        raise CrossbenchError(f"{path}: names {', '.join(missing)}, which is not a results folder (no runs/); "
                              "restore it or rebuild the table")
    return out
