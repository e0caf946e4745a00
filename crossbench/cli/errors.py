"""The error contract every ``crossbench`` command group follows.

- Bad input (:class:`~crossbench.errors.CrossbenchError`, or a malformed option): one
  ``crossbench: error: ...`` line on stderr, exit status 2. The line is at most
  :data:`~crossbench.errors.LINE_LIMIT` characters: a long value inside it is shortened.
- The machine, not the input (a full or read-only disk, a folder that cannot be written, not
  enough memory): one ``crossbench: error:`` line naming the path or the size, exit status 2.
- The reader of stdout gone (``crossbench run | head``): no line, exit status 141.
- Ctrl-C: one line, exit status 130, at any moment; result files are written atomically, so
  nothing is left half-written and finished runs are kept. While the command starts (modules
  and plugins loading) the process ends at once; while it runs, the interrupt unwinds the
  command so that temporary files are removed.
- Anything else is a bug in crossbench or a plugin: one line saying so, naming the file that
  holds the traceback, exit status 1.
"""

from __future__ import annotations

import errno
import os
import signal
import tempfile
import traceback
from typing import Any

import click

from crossbench.cli.interrupt import INTERRUPTED, exit_at_once
from crossbench.errors import LINE_LIMIT, CrossbenchError, os_error_message, shorten

#: ``OSError`` numbers that are the machine's state, not a bug: reported as one line, exit status 2
ENVIRONMENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG, errno.EIO})


def error_line(message: str) -> str:
    """The one ``crossbench: error:`` line for ``message`` (flattened and shortened)."""
    return shorten(f"crossbench: error: {message}", LINE_LIMIT)


def memory_message(exc: BaseException) -> str | None:
    """One line for running out of memory (Python's ``MemoryError``, torch's allocator), else ``None``."""
    text = str(exc)
    if not isinstance(exc, MemoryError) and "can't allocate memory" not in text and "out of memory" not in text.lower():
        return None
    total = _memory_gib()
    have = f"this machine has {total:.0f} GiB" if total else "the machine's memory is exhausted"
    return (f"not enough memory ({type(exc).__name__}: {shorten(text, 120)}); {have}: "
            "lower the sizes (n_users, n_items, dim, batch sizes) or use a machine with more memory")


def _memory_gib() -> float:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        return 0.0


class ErrorContractGroup(click.Group):
    """A command group that turns every failure into one line and the contract's exit status."""

    def invoke(self, ctx: click.Context) -> Any:
        switched = _raise_on_interrupt()
        try:
            return self._invoke(ctx)
        finally:
            if switched:
                signal.signal(signal.SIGINT, exit_at_once)

    def _invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CrossbenchError as exc:
            click.echo(error_line(str(exc)), err=True)
            ctx.exit(2)
        except click.UsageError as exc:
            where = f"`{exc.ctx.command_path} --help`" if exc.ctx is not None else "`crossbench --help`"
            click.echo(error_line(f"{exc.format_message()} (see {where})"), err=True)
            ctx.exit(2)
        except KeyboardInterrupt:
            click.echo(INTERRUPTED, err=True)
            ctx.exit(130)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except BrokenPipeError:  # the reader of stdout went away (`crossbench ... | head`): nothing left to say
            _silence_stdout()
            ctx.exit(141)
        except OSError as exc:
            if exc.errno not in ENVIRONMENT_ERRNOS:
                _bug(ctx, exc)
            click.echo(error_line(os_error_message(exc)), err=True)
            ctx.exit(2)
        except Exception as exc:  # noqa: BLE001 - the contract: a bug is one line and exit 1, its traceback kept
            memory = memory_message(exc)
            if memory is not None:
                click.echo(error_line(memory), err=True)
                ctx.exit(2)
            _bug(ctx, exc)


def _bug(ctx: click.Context, exc: BaseException) -> None:
    path = _save_traceback()
    click.echo(shorten(f"crossbench: internal error (a bug, not your input): {type(exc).__name__}: {exc}", LINE_LIMIT - 90)
               + f"; traceback in {path}; please report it with the command line", err=True)
    ctx.exit(1)


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's last flush does not fail a second time."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.close(devnull)
    except OSError:
        pass


def _raise_on_interrupt() -> bool:
    """In the console command, let Ctrl-C unwind the command from now on (temporary files are removed).

    Before a command runs, the console entry point ends the process at once on Ctrl-C
    (:func:`crossbench.cli.exit_at_once`); an embedding program keeps its own handler.
    """
    try:
        if signal.getsignal(signal.SIGINT) is exit_at_once:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            return True
    except ValueError:  # not the main thread
        pass
    return False


def _save_traceback() -> str:
    try:
        fd, path = tempfile.mkstemp(prefix="crossbench-traceback-", suffix=".txt")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(traceback.format_exc())
        return path
    except OSError:
        return "(not saved: no writable temporary folder)"
