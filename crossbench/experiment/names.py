"""Checks of the names and labels a person gives (experiment names, model labels) at the input.

A name becomes a folder name and a label becomes a table row and a file name: an empty one, one
with control characters (a newline breaks a table row and a log line), a ``|`` (the Markdown
cell separator) in a label, or one longer than a person would type is refused with one line,
before any work.
"""

from __future__ import annotations

import unicodedata

from crossbench.errors import CrossbenchError, short_repr

#: the longest experiment name and model label accepted (in characters)
MAX_NAME = 200
MAX_LABEL = 1000


def _check(text: str, *, where: str, limit: int, what: str) -> str:
    if len(text) > limit:
        raise CrossbenchError(f"{where}: the {what} is {len(text):,} characters long, more than the {limit:,} allowed; "
                              f"give a shorter {what} ({short_repr(text, 60)})")
    if not text.strip():
        raise CrossbenchError(f"{where}: the {what} is empty; give a {what} with at least one visible character")
    bad = next((c for c in text if unicodedata.category(c) == "Cc"), None)
    if bad is not None:
        raise CrossbenchError(f"{where}: the {what} {short_repr(text, 60)} holds the control character {bad!r}; "
                              f"use printable characters only")
    return text


def _no_pipe(text: str, *, where: str, what: str) -> str:
    if "|" in text:
        raise CrossbenchError(f"{where}: the {what} {short_repr(text, 60)} holds '|', which separates the cells of "
                              "the Markdown tables; use another character")
    return text


def check_name(text: str, *, where: str) -> str:
    """``text`` if it is a usable experiment name (the results folder and the tables' headings), else a :class:`CrossbenchError`."""
    return _no_pipe(_check(text, where=where, limit=MAX_NAME, what="name"), where=where, what="name")


def check_label(text: str, *, where: str) -> str:
    """``text`` if it is a usable model label (a table row and a file name), else a :class:`CrossbenchError`."""
    return _no_pipe(_check(text, where=where, limit=MAX_LABEL, what="label"), where=where, what="label")
