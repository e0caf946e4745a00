"""File helpers below every other layer: the one atomic writer, content hashes, safe file names,
the mode new files get, and writability probes."""

from __future__ import annotations

import errno
import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


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


def make_folders(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; return the folders created, deepest first
    (for :func:`remove_folders` to take back when the work that needed them is refused)."""
    created: list[Path] = []
    p = Path(folder)
    while not p.exists() and p != p.parent:
        created.append(p)
        p = p.parent
    Path(folder).mkdir(parents=True, exist_ok=True)
    return created


def remove_folders(created: list[Path]) -> None:
    """Remove the (empty) folders :func:`make_folders` created, deepest first; stop at one that is not empty."""
    for q in created:
        try:
            q.rmdir()
        except OSError:
            break


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


@contextmanager
def atomic_write(path: Path) -> Iterator[BinaryIO]:
    """A binary file to write ``path`` through: a temporary file beside it that replaces ``path``
    (``os.replace``) when the block ends, with the mode a new file gets under the umask.

    On an error the temporary file is removed and ``path`` is left as it was, so a reader never
    sees a half-written file.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise _write_fault(exc, path) from None
    try:
        os.fchmod(fd, umask_mode())  # mkstemp creates 0600 whatever the umask
        with os.fdopen(fd, "wb") as f:
            yield f
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        if exc.errno in WRITE_ERRNOS and exc.filename in (None, tmp, str(path)):
            raise _write_fault(exc, path) from None
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


#: ``OSError`` numbers of a write the machine refused (full, read-only, not permitted, no such folder)
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG, errno.EIO,
                          errno.ENOENT, errno.ENOTDIR})


def _write_fault(exc: OSError, path: Path) -> Exception:
    """The environment error for a write of ``path`` the machine refused (one line naming ``path``)."""
    from crossbench.errors import EnvironmentFault

    if exc.errno not in WRITE_ERRNOS:
        return exc
    return EnvironmentFault(f"cannot write {path}: {exc.strerror or exc}"
                            + ("; free some space or choose another folder" if exc.errno in (errno.ENOSPC, errno.EDQUOT)
                               else "; choose a folder that can be written"))


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (:func:`atomic_write`)."""
    with atomic_write(path) as f:
        f.write(data)


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` as UTF-8, atomically (:func:`atomic_write`)."""
    write_bytes_atomic(path, text.encode("utf-8"))
