"""The error contract every ``crossbench`` command group follows.

- Bad input (:class:`~crossbench.errors.CrossbenchError`, or a malformed option): one
  ``crossbench: error: ...`` line on stderr, exit status 2.
- Ctrl-C: one line, exit status 130; result files are written atomically, so nothing is left
  half-written.
- Anything else is a bug in crossbench or a plugin: one line saying so, naming the file that
  holds the traceback, exit status 1.
"""

from __future__ import annotations

import os
import tempfile
import traceback
from typing import Any

import click

from crossbench.errors import CrossbenchError


class ErrorContractGroup(click.Group):
    """A command group that turns every failure into one line and the contract's exit status."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CrossbenchError as exc:
            click.echo(f"crossbench: error: {exc}", err=True)
            ctx.exit(2)
        except click.UsageError as exc:
            where = f"`{exc.ctx.command_path} --help`" if exc.ctx is not None else "`crossbench --help`"
            click.echo(f"crossbench: error: {exc.format_message()} (see {where})", err=True)
            ctx.exit(2)
        except KeyboardInterrupt:
            click.echo("crossbench: interrupted; finished runs are kept, the same command resumes", err=True)
            ctx.exit(130)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except Exception as exc:  # noqa: BLE001 - the contract: a bug is one line and exit 1, its traceback kept
            path = _save_traceback()
            click.echo(f"crossbench: internal error (a bug, not your input): {type(exc).__name__}: {exc}; "
                       f"traceback in {path}; please report it with the command line", err=True)
            ctx.exit(1)


def _save_traceback() -> str:
    try:
        fd, path = tempfile.mkstemp(prefix="crossbench-traceback-", suffix=".txt")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(traceback.format_exc())
        return path
    except OSError:
        return "(not saved: no writable temporary folder)"
