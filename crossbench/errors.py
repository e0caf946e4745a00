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
    pool = sorted(set(candidates))
    found = difflib.get_close_matches(name, pool, n=n, cutoff=0.5)
    if not found:
        lowered = name.lower()
        found = [c for c in pool if lowered in c.lower() or c.lower() in lowered][:n]
    return found


def unknown_name_message(what: str, name: str, candidates: Iterable[str]) -> str:
    """Build the message for an unknown ``name`` of kind ``what``, naming the closest valid ones."""
    pool = sorted(set(candidates))
    near = closest(name, pool)
    msg = f"unknown {what} {name!r}"
    if near:
        msg += f"; did you mean {', '.join(repr(c) for c in near)}?"
    if pool:
        msg += f" (available: {', '.join(pool)})"
    else:
        msg += f" (no {what}s are registered)"
    return msg
