"""The ``crossbench`` command: every subcommand, options turned into an experiment, and
the error contract (bad input: exit 2 with one line on stderr before any work; a bug:
exit 1 with the traceback kept).

It is the top of the pipeline: it may import every stage, and no stage imports it.

This module is the console entry point (``crossbench.cli:main``) and stays light: it installs
the Ctrl-C handling first, then loads the commands (:mod:`crossbench.cli.app`) on first use,
so an interrupt while modules load is one line and exit status 130, not a traceback.
"""

from __future__ import annotations

import os
import signal
import sys

from crossbench.cli.interrupt import INTERRUPTED, SCRIPT_NAMES, exit_at_once, install_interrupt_handler

TYPE_CHECKING = False  # not `typing.TYPE_CHECKING`: importing typing would cost the start-up time saved here
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

    from crossbench.cli.app import build_cli, cli
    from crossbench.cli.common import CliState

if os.path.basename(sys.argv[0] if sys.argv else "") in SCRIPT_NAMES:
    install_interrupt_handler()  # the console script: before any heavy import


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point: the Ctrl-C handling, then every command (and the plugins' ones)."""
    previous = install_interrupt_handler()
    try:
        from crossbench.cli.app import main as run_main

        run_main(argv)
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def __getattr__(name: str) -> Any:
    if name in ("build_cli", "cli"):
        from crossbench.cli import app

        return getattr(app, name)
    if name == "CliState":
        from crossbench.cli.common import CliState

        return CliState
    raise AttributeError(f"module 'crossbench.cli' has no attribute {name!r}")


__all__ = ["INTERRUPTED", "CliState", "build_cli", "cli", "exit_at_once", "main"]
