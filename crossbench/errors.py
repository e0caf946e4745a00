"""Errors that the CLI turns into one clear line and a non-zero exit."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class CrossbenchError(Exception):
    """A problem with the user's input or environment, described for a person.

    The message says what was wrong, where, and what to do about it.
    """


def closest(name: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """Return up to ``n`` of ``candidates`` that look most like ``name``."""
    if len(name) > 200:  # no valid name is that long, and comparing it would take long
        return []
    pool = sorted(set(candidates))
    found = difflib.get_close_matches(name, pool, n=n, cutoff=0.5)
    if not found:
        lowered = name.lower()
        found = [c for c in pool if lowered in c.lower() or c.lower() in lowered][:n]
    return found


#: the most valid names an "unknown name" message lists
MAX_LISTED = 12


def unknown_name_message(what: str, name: str, candidates: Iterable[str], *, listed: bool = True) -> str:
    """Build the message for an unknown ``name`` of kind ``what``, naming the closest valid ones
    and (``listed``) up to :data:`MAX_LISTED` of the valid names. ``name`` is shortened if long."""
    pool = sorted(set(candidates))
    near = closest(name, pool)
    msg = f"unknown {what} {short_repr(name, 60)}"
    if near:
        msg += f"; did you mean {', '.join(repr(c) for c in near)}?"
    if not pool:
        msg += f" (no {what}s are registered)"
    elif listed:
        more = f" and {len(pool) - MAX_LISTED} more" if len(pool) > MAX_LISTED else ""
        msg += f" (available: {', '.join(pool[:MAX_LISTED])}{more})"
    return msg


#: the longest error or warning line the command prints (values inside it are shortened to fit)
LINE_LIMIT = 500


def shorten(text: str, limit: int = 80) -> str:
    """``text`` on one line and at most ``limit`` characters: whitespace runs become one space and
    the middle of a longer text is replaced by `` ... `` (both ends are kept: they tell most).
    The work is bounded: a text of megabytes is cut before it is split."""
    text = str(text)
    if len(text) > 8 * limit:
        text = f"{text[: 4 * limit]} ... {text[-2 * limit:]}"
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    tail = limit // 3
    head = max(limit - tail - 5, 1)
    return f"{flat[:head]} ... {flat[len(flat) - tail:]}"


def short_repr(value: object, limit: int = 80) -> str:
    """``repr(value)`` shortened (:func:`shorten`); a huge string is not copied whole to build it."""
    if isinstance(value, str) and len(value) > 4 * limit:
        return f"{shorten(repr(value[: 2 * limit]), limit)} ({len(value):,} characters)"
    return shorten(repr(value), limit)


class EnvironmentFault(CrossbenchError):
    """The machine, not the input: a full or read-only disk, a folder that cannot be written,
    not enough memory. Reported like bad input (one line, exit status 2), naming the path."""


def os_error_message(exc: OSError) -> str:
    """One line for an ``OSError`` of the file system: the path, the reason, and what to do."""
    import errno

    full = exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG)
    action = "cannot write" if full else "cannot access"

    path = exc.filename if exc.filename is not None else "(unknown path)"
    reason = exc.strerror or type(exc).__name__
    hints = {
        errno.ENOSPC: "free some space or choose another folder",
        errno.EDQUOT: "free some space or choose another folder",
        errno.EROFS: "the file system is read-only; choose another folder",
        errno.EACCES: "check the folder's permissions or choose another folder",
        errno.EPERM: "check the folder's permissions or choose another folder",
        errno.EFBIG: "the file is too large for this file system; choose another folder",
    }
    hint = hints.get(exc.errno or 0, "check the path or choose another folder")
    return f"{action} {shorten(str(path), 160)}: {reason}; {hint}"
