"""Progress bars on stderr (never stdout, which carries results)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

import click

T = TypeVar("T")


@contextlib.contextmanager
def progress_bar(items: Iterable[T], *, label: str, enabled: bool = True, length: int | None = None) -> Iterator[Iterable[T]]:
    """Wrap ``items`` in a click progress bar on stderr when ``enabled``."""
    if not enabled:
        yield items
        return
    with click.progressbar(items, label=label, file=sys.stderr, length=length) as bar:  # type: ignore[call-overload]
        yield bar
