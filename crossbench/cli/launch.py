"""``--nproc N``: one command run as N local processes joined by ``torch.distributed``, with a watchdog.

``crossbench run/tune/reproduce --nproc N`` starts N copies of the same command line, each with
the variables torchrun sets (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``LOCAL_WORLD_SIZE``,
``MASTER_ADDR=127.0.0.1``, ``MASTER_PORT`` a free port), and waits for them. Each copy joins
the others (:func:`crossbench.train.distributed.process_group`) and trains data-parallel;
rank 0's output is this command's output, and rank 0 alone writes results.

The watchdog: when a rank fails (an error, an exit without one, a signal such as SIGKILL),
the others are given :data:`GRACE_S` seconds to end by themselves (so that the rank that
caused the failure, not one that merely lost contact with it, is named), then SIGTERM, then
after :data:`KILL_AFTER_S` seconds SIGKILL. Every rank has ended at most
``POLL_S + GRACE_S + KILL_AFTER_S`` (about 6 s) after the first failure, and the command
prints one line naming the failed rank and its cause and exits non-zero (the failed rank's
status, or 1). Records are written atomically by rank 0 after a run is complete, so no
record is half-written; the same command again resumes as a single-process run does.

Under ``torchrun`` (``WORLD_SIZE`` already set) no processes are started here: ``--nproc``,
if given, must equal the world size.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO, Any

import click

from crossbench.errors import LINE_LIMIT, CrossbenchError, shorten

#: seconds between the watchdog's looks at the ranks
POLL_S = 0.1
#: seconds the other ranks get to end by themselves after the first failure
GRACE_S = 1.0
#: seconds between SIGTERM and SIGKILL
KILL_AFTER_S = 4.0
#: what a rank's line says when it merely lost contact with the rank that failed
_LOST = ("lost contact", "of the evaluation failed", "stopped the fit")


def nproc_option(f: Any) -> Any:
    """The ``--nproc`` option of `run`, `tune` and `reproduce`."""
    return click.option(
        "--nproc", type=int, default=None,
        help="Processes to train and evaluate with, data-parallel on this machine (gloo on CPU, NCCL on CUDA; "
             "the global batch is shared out, results are the same files). Under torchrun: its world size.",
    )(f)


@dataclass
class RankProcess:
    """One started rank: its process, the lines kept from its stderr, when the watchdog saw it end."""

    rank: int
    process: subprocess.Popen[bytes]
    lines: list[str] = field(default_factory=list)
    ended: float | None = None

    def cause(self) -> str:
        status = self.process.returncode
        errors = [line for line in self.lines if line.startswith("crossbench: ")]
        if status is not None and status < 0:
            return f"was killed by {signal.Signals(-status).name}"
        if errors:
            text = errors[-1].split(": ", 2)[-1] if errors[-1].startswith("crossbench: error: ") else errors[-1]
            return f"failed: {text.removeprefix('crossbench: ')}"
        return f"exited with status {status} without an error line"

    def secondary(self) -> bool:
        """Whether it failed only because another rank did (it lost contact with it)."""
        status = self.process.returncode
        return status is not None and status > 0 and any(s in self.cause() for s in _LOST)


def world_from_env(nproc: int | None) -> int | None:
    """The world size torchrun (or the launcher) set, checked against ``--nproc``; ``None`` outside one."""
    text = os.environ.get("WORLD_SIZE")
    if not text:
        if nproc is not None and nproc < 1:
            raise CrossbenchError(f"--nproc {nproc}: give at least 1 process")
        return None
    world = int(text) if text.isdigit() else -1
    if world < 1:
        raise CrossbenchError(f"WORLD_SIZE={text!r} is not a positive whole number (torchrun and --nproc set it)")
    if nproc is not None and nproc != world:
        raise CrossbenchError(f"--nproc {nproc} under a launcher of {world} processes (WORLD_SIZE); leave --nproc out")
    return world


def launched(nproc: int | None, command: str) -> int | None:
    """With ``--nproc N`` > 1 outside a launcher: run N ranks of this command line and return the exit
    status for this process; else ``None`` (this process does the work itself)."""
    if world_from_env(nproc) is not None or nproc is None or nproc == 1:
        return None
    if sys.argv[1:2] != [command]:
        raise CrossbenchError(f"--nproc starts copies of the `crossbench {command}` command line, and this process was not "
                              "started by one; launch the program with torchrun instead")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ranks = [start_rank(r, nproc, port) for r in range(nproc)]
    try:
        return watch(ranks)
    except KeyboardInterrupt:
        _stop(ranks)
        raise


def start_rank(rank: int, world: int, port: int, args: list[str] | None = None) -> RankProcess:
    """Start rank ``rank`` of ``world``: this command line again (or ``args``), its stderr watched."""
    env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world),
           "LOCAL_WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    args = args or [sys.executable, "-c", "from crossbench.cli import main; main()", *sys.argv[1:]]
    process = subprocess.Popen(args, env=env, stdout=None if rank == 0 else subprocess.DEVNULL, stderr=subprocess.PIPE)
    r = RankProcess(rank, process)
    assert process.stderr is not None
    threading.Thread(target=_read, args=(r, process.stderr), daemon=True).start()
    return r


def _read(r: RankProcess, stream: IO[bytes]) -> None:
    """Keep the rank's error lines; pass rank 0's other lines (progress, log) through at once."""
    for raw in iter(stream.readline, b""):
        line = raw.decode("utf-8", errors="replace").rstrip("\n")
        if line.startswith(("crossbench: error", "crossbench: internal error", "crossbench: interrupted")):
            r.lines.append(line)
        elif r.rank == 0:
            sys.stderr.write(line + "\n")
            sys.stderr.flush()
        else:
            r.lines[:] = [*r.lines[-20:], line]


def watch(ranks: list[RankProcess]) -> int:
    """Wait for every rank; on the first failure stop them all (module docstring) and say one line.
    Returns 0 when every rank succeeded, else the failed rank's status (1 for a signal)."""
    failed_at: float | None = None
    while True:
        now = time.monotonic()
        for r in ranks:
            if r.ended is None and r.process.poll() is not None:
                r.ended = now
                if r.process.returncode != 0 and failed_at is None:
                    failed_at = now
        if all(r.ended is not None for r in ranks) and failed_at is None:
            return 0
        if failed_at is not None and (now - failed_at >= GRACE_S or all(r.ended is not None for r in ranks)):
            _stop(ranks)
            time.sleep(POLL_S)  # the readers' last lines
            failed = sorted((r for r in ranks if r.process.returncode not in (0, None) and r.ended is not None and r.ended <= now),
                            key=lambda r: (r.secondary(), r.ended, r.rank))
            culprit = failed[0]
            line = f"crossbench: error: rank {culprit.rank} of {len(ranks)} {culprit.cause()}; every rank was stopped"
            click.echo(shorten(line, LINE_LIMIT), err=True)
            status = culprit.process.returncode
            return status if status is not None and status > 0 else 1
        time.sleep(POLL_S)


def _stop(ranks: list[RankProcess]) -> None:
    """SIGTERM to every rank still running, SIGKILL to those still running :data:`KILL_AFTER_S` later."""
    alive = [r for r in ranks if r.process.poll() is None]
    for r in alive:
        r.process.terminate()
    deadline = time.monotonic() + KILL_AFTER_S
    for r in alive:
        try:
            r.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            r.process.kill()
            r.process.wait()


@contextmanager
def ranks_of(command: str, nproc: int | None, exp: Any, registry: Any, device: str) -> Iterator[Any]:
    """The ranks of a `run` or `tune` command: ``None`` in a process that started ``--nproc`` ranks and
    watched them (their exit status ends it), else this process's
    :class:`~crossbench.train.distributed.Ranks` inside its process group (one process: world size 1)."""
    from crossbench.experiment.checks import pick_device, validate
    from crossbench.train.distributed import process_group

    torch_device = pick_device(device)
    if nproc not in (None, 1) and world_from_env(nproc) is None:
        validate(exp, registry)  # bad input is one line before any rank starts
    status = launched(nproc, command)
    if status is not None:
        yield None
        click.get_current_context().exit(status)
        return
    with process_group(torch_device) as dp:
        yield dp
