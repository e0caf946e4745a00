"""Per-user metric values, kept beside each run record for paired comparisons.

One compressed ``.npz`` per run: ``users`` (int64), one float64 array per ``"metric@k"``
key aligned with it, the catalogue-level values as ``catalog:<key>`` scalars, and a JSON
``meta`` string holding the mode (``full`` or ``sampled``) and the sampling parameters. The
run record references the file by path and sha256 (returned by :func:`save_per_user`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from crossbench.errors import CrossbenchError
from crossbench.evaluate.ranking import EvalResult
from crossbench.files import atomic_write, file_sha256

_CATALOG = "catalog:"
_RESERVED = ("users", "meta")


def save_per_user(result: EvalResult, path: Path) -> str:
    """Write ``result`` to ``path`` (``.npz``) atomically; return the file's sha256."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {"users": np.asarray(result.users, dtype=np.int64)}
    for key, values in result.per_user.items():
        if key in _RESERVED or key.startswith(_CATALOG):
            raise CrossbenchError(f"metric key {key!r} clashes with a reserved name of the per-user file")
        arrays[key] = np.asarray(values, dtype=np.float64)
    for key, value in result.catalog.items():
        arrays[_CATALOG + key] = np.asarray(value, dtype=np.float64)
    arrays["meta"] = np.asarray(json.dumps({"mode": result.mode, "sampling": dict(result.sampling)}, sort_keys=True))
    with atomic_write(path) as f:
        np.savez_compressed(f, **arrays)  # type: ignore[arg-type]
    return file_sha256(path)


def load_per_user(path: Path, *, sha256: str | None = None, where: str | None = None) -> EvalResult:
    """Read a file written by :func:`save_per_user`; with ``sha256``, refuse a file whose hash differs
    (``where`` names the record in the message)."""
    path = Path(path)
    if sha256 is not None and file_sha256(path) != sha256:
        raise CrossbenchError(f"{where or path}: the sha256 of {path.name} does not match the record; "
                              "the per-user file was changed or replaced")
    with np.load(path, allow_pickle=False) as z:
        users = z["users"]
        per_user = {k: z[k] for k in z.files if k not in _RESERVED and not k.startswith(_CATALOG)}
        catalog = {k[len(_CATALOG) :]: float(z[k]) for k in z.files if k.startswith(_CATALOG)}
        meta: dict[str, Any] = json.loads(str(z["meta"])) if "meta" in z.files else {"mode": "full", "sampling": {}}
    return EvalResult(users=users, per_user=per_user, catalog=catalog, mode=str(meta["mode"]), sampling=dict(meta["sampling"]))


class PerUserFiles:
    """The per-user files of one table build, each read once.

    The first :meth:`read` of a file checks its sha256 and loads it (:func:`load_per_user`);
    later reads of the same file return what was loaded, so verifying the records and building
    every table from them reads each file once.
    """

    def __init__(self) -> None:
        self._read: dict[Path, tuple[str | None, EvalResult]] = {}

    def read(self, path: Path, *, sha256: str | None = None, where: str | None = None) -> EvalResult:
        key = Path(path).resolve()
        if key not in self._read:
            self._read[key] = (sha256, load_per_user(path, sha256=sha256, where=where))
        checked, result = self._read[key]
        if sha256 is not None and checked is None:
            self._read[key] = (sha256, load_per_user(path, sha256=sha256, where=where))
        elif sha256 is not None and checked != sha256:
            raise CrossbenchError(f"{where or path}: the sha256 of {Path(path).name} does not match the record; "
                                  "the per-user file was changed or replaced")
        return self._read[key][1]
