"""Progress on stderr (never stdout, which carries results): bars on a terminal, lines everywhere.

A bar (:func:`progress_bar`) is drawn only when stderr is a terminal; a log file gets the
lines of :func:`say` instead: the position of each run, each epoch with its validation value
and the time left (:class:`EpochClock`), each tuning trial, and one summary line per
finished run. ``-q`` turns both off.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

import click

T = TypeVar("T")


@contextlib.contextmanager
def progress_bar(items: Iterable[T], *, label: str, enabled: bool = True, length: int | None = None) -> Iterator[Iterable[T]]:
    """Wrap ``items`` in a click progress bar on stderr when ``enabled`` and stderr is a terminal."""
    if not enabled or not sys.stderr.isatty():
        yield items
        return
    with click.progressbar(items, label=label, file=sys.stderr, length=length) as bar:  # type: ignore[call-overload]
        yield bar


def say(message: str, *, enabled: bool = True) -> None:
    """One progress line on stderr when ``enabled``."""
    if enabled:
        click.echo(message, err=True)


def duration(seconds: float) -> str:
    """``seconds`` for people: ``0.4 s``, ``12 s``, ``3 min 05 s``, ``1 h 02 min``."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = int(round(seconds))
    if whole < 60:
        return f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


#: Seconds between two epoch lines that carry no validation value.
QUIET_SECONDS = 5.0


@dataclass
class EpochClock:
    """Times the epochs of one fit, keeps the best validation value, and words one line per epoch.

    The time left is the mean time of the epochs so far (training and validation) times the
    epochs left: an upper bound, since early stopping may end the fit sooner.
    """

    total: int
    metric: str = ""
    label: str = "epoch"
    enabled: bool = True
    #: whether a lower validation value is better (an error such as RMSE)
    lower_is_better: bool = False
    started: float = field(default_factory=time.perf_counter)
    best: float | None = None
    best_epoch: int = 0
    #: when the last line was said (``None``: not yet)
    said: float | None = None

    def line(self, epoch: int, value: float | None = None) -> str:
        """``epoch 3/30: ndcg@10 0.1234 (best 0.1301, epoch 2); 4.1 s per epoch, at most 1 min 50 s left``."""
        per_epoch = (time.perf_counter() - self.started) / max(epoch, 1)
        text = f"  {self.label} {epoch}/{self.total}"
        if value is not None:
            if self.best is None or (value < self.best if self.lower_is_better else value > self.best):
                self.best, self.best_epoch = value, epoch
            text += f": {self.metric} {value:.4f}".replace(" :", ":")
            if self.best_epoch != epoch:
                text += f" (best {self.best:.4f}, epoch {self.best_epoch})"
        left = max(self.total - epoch, 0) * per_epoch
        text += f"; {duration(per_epoch)} per epoch"
        return text + (f", at most {duration(left)} left" if left >= 0.05 else "")

    def epoch(self, epoch: int, value: float | None = None, *, then: Callable[[int, float], None] | None = None) -> None:
        """Say the line of ``epoch`` (when enabled), then hand a validation ``value`` to ``then`` (e.g. a pruner's callback).

        An epoch without a validation value is said only if it is the first or the last, or
        :data:`QUIET_SECONDS` have passed since the last line (fast pretraining stages of many
        epochs would otherwise flood the log).
        """
        now = time.perf_counter()
        if value is not None or self.said is None or epoch >= self.total or now - self.said >= QUIET_SECONDS:
            say(self.line(epoch, value), enabled=self.enabled)
            self.said = now
        if then is not None and value is not None:
            then(epoch, value)
