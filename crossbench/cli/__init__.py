"""The ``crossbench`` command: every subcommand, options turned into an experiment, and
the error contract (bad input: exit 2 with one line on stderr before any work; a bug:
exit 1 with the traceback kept).

It is the top of the pipeline: it may import every stage, and no stage imports it.
"""

from crossbench.cli.app import build_cli, cli, main
from crossbench.cli.common import CliState

__all__ = ["CliState", "build_cli", "cli", "main"]
