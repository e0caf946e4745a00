"""The error contract every ``crossbench`` command group follows."""

from __future__ import annotations

from typing import Any

import click

from crossbench.errors import CrossbenchError


class ErrorContractGroup(click.Group):
    """Bad input (:class:`CrossbenchError`): one ``crossbench: error:`` line, exit 2. Ctrl-C: one line, exit 130."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CrossbenchError as exc:
            click.echo(f"crossbench: error: {exc}", err=True)
            ctx.exit(2)
        except KeyboardInterrupt:
            # every result file is written atomically: nothing half-written is left behind
            click.echo("crossbench: interrupted; finished runs are kept, the same command resumes", err=True)
            ctx.exit(130)
