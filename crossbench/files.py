"""File helpers below every other layer: content hashes, safe file names, the mode new files get, and writability probes."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, read in blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def umask_mode() -> int:
    """The mode a new regular file gets under the current umask (``0o666 & ~umask``)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def probe_folder(folder: Path) -> None:
    """Create ``folder`` (and its missing parents) and a file in it, then remove everything the probe made.

    Raises the ``OSError`` of the first step that fails, so that a place that cannot be written
    (a read-only folder, a path under a file, /proc) is refused before any work.
    """
    import tempfile

    created: list[Path] = []
    p = Path(folder)
    while not p.exists() and p != p.parent:
        created.append(p)
        p = p.parent
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".probe.", suffix=".tmp")
        os.close(fd)
        os.unlink(tmp)
    finally:
        for q in created:  # deepest first
            try:
                q.rmdir()
            except OSError:
                break


def safe_name(text: str, *, limit: int = 60) -> str:
    """``text`` as a file name that cannot leave its folder and stays distinct from others.

    A name of ASCII letters, digits, ``_``, ``-`` and inner ``.`` is kept as it is; any other
    name becomes a readable slug plus the first 8 hex digits of its sha256 (``模型`` ->
    ``name-<hash>``, ``../../x`` -> ``x-<hash>``), so two labels never share a file.
    """
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.")[:limit].strip("-.")
    if slug == text:
        return slug
    return f"{slug or 'name'}-{hashlib.sha256(text.encode('utf-8')).hexdigest()[:8]}"
