"""Ctrl-C in the console command: one line and exit status 130 at any moment, start-up included.

While the command starts (modules and plugins load) nothing is written yet, so the process
ends at once (:func:`exit_at_once`); once a command runs, the error contract lets the interrupt
unwind it (temporary files removed, finished runs kept; :mod:`crossbench.cli.errors`).
This module imports nothing heavy: the console entry point installs it before anything else.
"""

from __future__ import annotations

import os
import signal

TYPE_CHECKING = False  # not `typing.TYPE_CHECKING`: importing typing would cost the start-up time saved here
if TYPE_CHECKING:
    from types import FrameType
    from typing import Any

#: the one line a Ctrl-C prints
INTERRUPTED = "crossbench: interrupted; finished runs are kept, the same command resumes"

#: the file names the console script has (``crossbench``; ``crossbench.exe`` and ``crossbench-script.py`` on Windows)
SCRIPT_NAMES = ("crossbench", "crossbench.exe", "crossbench-script.py")


def exit_at_once(signum: int, frame: FrameType | None) -> None:
    """SIGINT while the command starts: nothing is written yet, so print the line and end now (status 130)."""
    try:
        os.write(2, (INTERRUPTED + "\n").encode())
    finally:
        os._exit(130)


def install_interrupt_handler() -> Any:
    """Make Ctrl-C end the process at once with one line (see :func:`exit_at_once`); return the previous handler.

    An interrupt that arrived while it was blocked (before this process could handle it) is
    handled now. A process started with SIGINT ignored (a background job) keeps ignoring it,
    and a thread other than the main one changes nothing; both return ``None``.
    """
    try:
        if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
            return None
        previous = signal.signal(signal.SIGINT, exit_at_once)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        return previous
    except ValueError:  # not the main thread: leave the embedding program's handling alone
        return None


