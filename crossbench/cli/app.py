"""The `crossbench` command group: every command of the package and those plugins add."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

from crossbench.cli.backfill import add_breakdowns
from crossbench.cli.commands import list_, plugins, run, tune
from crossbench.cli.common import CliState, check_numbers
from crossbench.cli.data import data_group
from crossbench.cli.errors import ErrorContractGroup, error_line
from crossbench.cli.leaderboard import leaderboard
from crossbench.cli.records import reproduce, verify
from crossbench.cli.show import show
from crossbench.cli.simulate import recommend_command, simulate_command
from crossbench.errors import CrossbenchError
from crossbench.plugin.manager import add_commands
from crossbench.version import __version__


@click.group(cls=ErrorContractGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="crossbench")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """crossbench: benchmark cross-domain recommenders fairly and reproducibly.

    Run `crossbench run` for the default benchmark, `crossbench list models` to see what
    can be compared, `crossbench show NAME` for a model's hyperparameters, and `crossbench plugins` for the installed plugins.
    """
    if not isinstance(ctx.obj, CliState):
        ctx.obj = CliState()


for _command in (run, tune, list_, show, plugins, leaderboard, data_group, verify, reproduce, add_breakdowns, recommend_command, simulate_command):
    cli.add_command(_command)
check_numbers(cli)


def build_cli(state: CliState | None = None) -> click.Group:
    """The command group with plugin-provided commands added."""
    state = state or CliState()
    add_commands(state.registry.pm, cli)  # type: ignore[arg-type]
    check_numbers(cli)
    return cli


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point."""
    state = CliState()
    try:
        group = build_cli(state)
    except CrossbenchError as exc:
        click.echo(error_line(str(exc)), err=True)
        sys.exit(2)
    group.main(args=list(argv) if argv is not None else None, prog_name="crossbench", obj=state)
