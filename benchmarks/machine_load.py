"""How busy the machine was outside a measurement (standard library only, Linux).

``OutsideLoad`` reads the machine's busy CPU time from ``/proc/stat`` and this process's own
CPU time (and that of its finished children) from ``getrusage`` at the start and the end of
a ``with`` block. The difference, over the wall time of the block, is the number of cores
other processes kept busy meanwhile: about 0 on a quiet machine, 1.0 when one outside core
was busy throughout. Timings taken with ``outside_cores_during`` well above 0 measure the
sharing of the machine as much as the code.
"""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path
from types import TracebackType

PROC_STAT = Path("/proc/stat")


def machine_busy_seconds() -> float | None:
    """CPU seconds every core of the machine has spent busy since boot; ``None`` without ``/proc/stat``."""
    try:
        first = PROC_STAT.read_text(encoding="ascii").splitlines()[0].split()
    except (OSError, IndexError):
        return None
    if not first or first[0] != "cpu":
        return None
    # user nice system idle iowait irq softirq steal (guest time is already inside user and nice)
    ticks = [int(x) for x in first[1:9]]
    busy = ticks[0] + ticks[1] + ticks[2] + ticks[5] + ticks[6] + ticks[7]
    return busy / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """User and system CPU seconds of this process and of its children that have ended."""
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


class OutsideLoad:
    """``with OutsideLoad() as load: ...``; then ``load.cores`` (``None`` where it cannot be measured)."""

    def __init__(self) -> None:
        self.cores: float | None = None
        self.wall_s = 0.0

    def __enter__(self) -> OutsideLoad:
        self._busy, self._own, self._t0 = machine_busy_seconds(), own_cpu_seconds(), time.perf_counter()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.wall_s = time.perf_counter() - self._t0
        busy = machine_busy_seconds()
        if busy is None or self._busy is None or self.wall_s <= 0:
            return
        outside = (busy - self._busy) - (own_cpu_seconds() - self._own)
        self.cores = round(max(outside, 0.0) / self.wall_s, 3)


def describe(cores: float | None) -> str:
    """``outside load 0.02 cores`` (``outside load unknown`` where it was not measured)."""
    return "outside load unknown" if cores is None else f"outside load {cores:.2f} cores"
