"""crossbench: a benchmark and evaluation harness for cross-domain recommendation.

The package is laid out by pipeline stage (see docs/architecture.md). This module is the
facade plugins start from: ``from crossbench import hookimpl``. No module of the core imports it.
It loads nothing until a name is asked for, so that the console command can install its
Ctrl-C handling before any module loads (see :mod:`crossbench.cli`).
"""

from __future__ import annotations

from crossbench.version import __version__

TYPE_CHECKING = False  # not `typing.TYPE_CHECKING`: importing typing would cost the start-up time saved here
if TYPE_CHECKING:
    from typing import Any

    from crossbench.plugin.hookspecs import hookimpl, hookspec


def __getattr__(name: str) -> Any:
    if name in ("hookimpl", "hookspec"):
        from crossbench.plugin import hookspecs

        return getattr(hookspecs, name)
    raise AttributeError(f"module 'crossbench' has no attribute {name!r}")


__all__ = ["__version__", "hookimpl", "hookspec"]
