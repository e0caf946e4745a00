"""Reading what a results folder holds without trusting it.

Only regular files are read, never through a symbolic link (``O_NOFOLLOW``), and never a
FIFO or a device (opened without blocking, then checked with ``fstat``); a file larger than
its bound is refused before it is read; JSON nested too deeply is refused rather than
overflowing the parser. Every refusal is a :class:`CrossbenchError` of one line naming the path.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path
from typing import Any

from crossbench.errors import CrossbenchError

#: the largest run record or manifest read (records are a few tens of KiB)
MAX_JSON_BYTES = 8 << 20


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def refuse_kind(path: Path, mode: int, *, what: str) -> CrossbenchError:
    return CrossbenchError(f"{what} {path} is {_kind(mode)}; crossbench reads and writes a results folder's files only as "
                           "regular files and folders, never through a link — replace it by the file or folder itself")


def check_regular(path: Path, *, what: str) -> None:
    """Refuse ``path`` unless it is a regular file itself (not a symbolic link to one); missing is ``FileNotFoundError``."""
    mode = os.lstat(path).st_mode
    if not stat.S_ISREG(mode):
        raise refuse_kind(path, mode, what=what)


def check_not_link(path: Path, *, what: str) -> None:
    """Refuse ``path`` when it is a symbolic link (a missing path is fine)."""
    try:
        mode = os.lstat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return
    if stat.S_ISLNK(mode):
        raise refuse_kind(path, mode, what=what)


def read_regular(path: Path, *, what: str, limit: int = MAX_JSON_BYTES) -> bytes:
    """The bytes of ``path``, a regular file of at most ``limit`` bytes (see the module's notes)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise refuse_kind(path, stat.S_IFLNK, what=what) from None
        raise CrossbenchError(f"{what} {path}: cannot read it ({exc.strerror or exc})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise refuse_kind(path, info.st_mode, what=what)
        if info.st_size > limit:
            raise CrossbenchError(f"{what} {path} is {info.st_size} bytes, more than the {limit} a crossbench file can be; "
                                  "it is not one crossbench wrote")
        with os.fdopen(os.dup(fd), "rb") as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise CrossbenchError(f"{what} {path}: cannot read it ({exc.strerror or exc})") from None
    finally:
        os.close(fd)
    if len(data) > limit:
        raise CrossbenchError(f"{what} {path} grew beyond {limit} bytes while it was read")
    return data


def read_json(path: Path, *, what: str, limit: int = MAX_JSON_BYTES) -> Any:
    """The JSON document in ``path`` (:func:`read_regular`); unreadable JSON is one line."""
    data = read_regular(path, what=what, limit=limit)
    try:
        return json.loads(data.decode("utf-8"))
    except RecursionError:
        raise CrossbenchError(f"{what} {path}: its JSON is nested too deeply to be a crossbench file") from None
    except (UnicodeDecodeError, ValueError) as exc:
        reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise CrossbenchError(f"{what} {path}: not readable JSON ({reason})") from None
