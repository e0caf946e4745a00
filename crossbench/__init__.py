"""crossbench: a benchmark and evaluation harness for cross-domain recommendation."""

from crossbench.hookspecs import hookimpl, hookspec

__version__ = "0.1.0"

__all__ = ["__version__", "hookimpl", "hookspec"]
