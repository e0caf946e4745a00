"""Per-user metric values, kept beside each run record for paired comparisons."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np

from crossbench.evaluate.ranking import EvalResult


def save_per_user(result: EvalResult, path: Path) -> str:
    """Write ``result``'s users and per-user values to ``path`` (``.npz``) atomically; return its sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, users=result.users, **{k: v for k, v in result.per_user.items()})
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_per_user(path: Path) -> EvalResult:
    """Read a file written by :func:`save_per_user`."""
    with np.load(path, allow_pickle=False) as z:
        users = z["users"]
        per_user = {k: z[k] for k in z.files if k != "users"}
    return EvalResult(users=users, per_user=per_user)
