"""crossbench: a benchmark and evaluation harness for cross-domain recommendation.

The package is laid out by pipeline stage (see docs/architecture.md). This module is the
facade plugins start from: ``from crossbench import hookimpl``. No module of the core imports it.
"""

from crossbench.plugin.hookspecs import hookimpl, hookspec
from crossbench.version import __version__

__all__ = ["__version__", "hookimpl", "hookspec"]
