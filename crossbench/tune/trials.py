"""The trial loop of a tuning study, shared safely by several workers through its storage.

The loop is storage-agnostic:

- a trial's number is handed out by the storage; a worker whose new trial would exceed the
  trial budget (counting finished, running and waiting trials with lower numbers) tells it
  FAIL with the user attribute ``crossbench:surplus`` and claims nothing more; so does a
  worker handed a second copy of the defaults trial (two workers opening a new study at once
  may each enqueue it: the lowest-numbered copy is the one run);
- a running trial records its worker (user attribute ``crossbench:worker``: host name, boot id,
  pid and the process's start time) and writes a heartbeat (``crossbench:heartbeat``) every
  ``heartbeat_s`` seconds. A trial whose worker ran on this machine and whose process is gone
  (no such pid, a zombie, or a pid reused by a process started later) is told FAIL and enqueued
  again with the same parameters (``crossbench:retry_of``) at once; a trial of another machine
  (or of a worker that recorded none) only once its heartbeat has been silent for
  ``2 * heartbeat_s``. A worker waiting on other workers' trials says which, and for how long;
- each trial's sampler is a TPE sampler seeded with ``(sampler seed, trial number)``, so two
  workers never draw the same random start and a resumed study continues where it stopped;
- the first trial of a new study is the model's defaults (``crossbench:defaults``), so the
  budget is the defaults plus ``trials - 1`` sampled configurations, for every model alike.

Completed trials are never rerun: a study killed at any point resumes with every finished
trial kept.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState

from crossbench.errors import CrossbenchError

SURPLUS = "crossbench:surplus"
HEARTBEAT = "crossbench:heartbeat"
RETRY_OF = "crossbench:retry_of"
DEFAULTS = "crossbench:defaults"
ERROR = "crossbench:error"
WORKER = "crossbench:worker"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
#: random trials before TPE models the history
STARTUP_TRIALS = 5


@dataclass(frozen=True)
class Budget:
    """A study's budget: finished trials (complete or pruned) and/or seconds of trials."""

    trials: int | None = None
    timeout_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"trials": self.trials, "timeout_s": self.timeout_s}


# ------------------------------------------------------------------------------ the loop


def trial_seconds(t: optuna.trial.FrozenTrial, now: float) -> float:
    if t.datetime_start is None:
        return 0.0
    end = t.datetime_complete.timestamp() if t.datetime_complete is not None else now
    return max(0.0, end - t.datetime_start.timestamp())


def _heartbeat_of(t: optuna.trial.FrozenTrial) -> float:
    beat = t.user_attrs.get(HEARTBEAT)
    if isinstance(beat, (int, float)):
        return float(beat)
    return t.datetime_start.timestamp() if t.datetime_start is not None else time.time()


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read().strip()
    except OSError:
        return None


def _process_start(pid: int) -> tuple[str | None, str | None]:
    """(state, start time in clock ticks since boot) of process ``pid`` from ``/proc``; ``None`` where unknown."""
    text = _read(f"/proc/{pid}/stat")
    if not text or ")" not in text:
        return None, None
    fields = text.rpartition(")")[2].split()
    return (fields[0], fields[19]) if len(fields) > 19 else (None, None)


def this_worker() -> dict[str, Any]:
    """What a trial records of the process running it: host name, boot id, pid, start time."""
    return {"host": socket.gethostname(), "boot": _read("/proc/sys/kernel/random/boot_id"), "pid": os.getpid(),
            "start": _process_start(os.getpid())[1]}


def worker_gone(worker: Any, *, here: dict[str, Any] | None = None) -> bool:
    """True when ``worker`` (a trial's :data:`WORKER`) ran on this machine and its process is gone.

    Only a worker of this host and boot is judged (a pid means nothing elsewhere); this process
    itself is never gone. A pid that exists but is a zombie, or was started at another time (a
    reused pid), is gone.
    """
    here = here or this_worker()
    if not isinstance(worker, dict) or not isinstance(worker.get("pid"), int):
        return False
    if worker.get("host") != here["host"] or worker.get("boot") != here["boot"] or here["boot"] is None:
        return False
    pid = worker["pid"]
    if pid == here["pid"]:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # another user's process: alive
        return False
    state, start = _process_start(pid)
    return state == "Z" or (start is not None and worker.get("start") not in (None, start))


def retry_stale(study: optuna.Study, *, heartbeat_s: float, trials: list[optuna.trial.FrozenTrial] | None = None) -> list[int]:
    """Fail the running trials whose worker is gone (same machine) or whose heartbeat stopped, and
    enqueue each again; their numbers."""
    now = time.time()
    here = this_worker()
    retried = []
    running = [t for t in (trials if trials is not None else study.get_trials(deepcopy=False)) if t.state == TrialState.RUNNING]
    for t in running:
        if now - _heartbeat_of(t) <= 2 * heartbeat_s and not worker_gone(t.user_attrs.get(WORKER), here=here):
            continue
        try:
            study._storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)
        except (RuntimeError, ValueError):  # another worker finished or failed it first
            continue
        study.enqueue_trial(dict(t.params), user_attrs={RETRY_OF: t.number}, skip_if_exists=False)
        retried.append(t.number)
    return retried


def waiting_text(study_name: str, trials: list[optuna.trial.FrozenTrial], *, heartbeat_s: float) -> str | None:
    """What a worker with nothing to run waits for: each running trial of another worker and how long at most."""
    now, here = time.time(), this_worker()
    parts = []
    for t in trials:
        if t.state != TrialState.RUNNING:
            continue
        w = t.user_attrs.get(WORKER)
        who = f"{w.get('host')}:{w.get('pid')}" if isinstance(w, dict) else "a worker that recorded no pid"
        local = isinstance(w, dict) and w.get("host") == here["host"] and w.get("boot") == here["boot"] and here["boot"] is not None
        left = max(0.0, 2 * heartbeat_s - (now - _heartbeat_of(t)))
        how = ("running on this machine; retried as soon as its process is gone" if local
               else f"retried if its heartbeat stays silent for another {left:.0f} s")
        parts.append(f"trial {t.number} of {who} ({how})")
    if not parts:
        return None
    return f"{study_name}: waiting for {'; '.join(parts)}"


class _Heartbeat:
    """Writes a running trial's heartbeat from a background thread."""

    def __init__(self, study: optuna.Study, trial: optuna.Trial, interval: float) -> None:
        self.storage, self.trial_id, self.interval = study._storage, trial._trial_id, interval
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True, name="crossbench-heartbeat")

    def _beat(self) -> None:
        while not self.stop_event.wait(self.interval):
            try:
                self.storage.set_trial_user_attr(self.trial_id, HEARTBEAT, time.time())
            except Exception:  # the trial finished meanwhile, or the storage blipped: try again next beat
                pass

    def __enter__(self) -> _Heartbeat:
        self.thread.start()  # until the first beat, the trial's start time stands for its heartbeat
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_event.set()
        self.thread.join()


def _budget_state(trials: list[optuna.trial.FrozenTrial], budget: Budget) -> tuple[bool, bool, bool]:
    """(met: the finished trials fill the budget; claimed: finished plus running ones do;
    running: some trial is running). Waiting trials (enqueued ones) are not claimed: the next
    ``ask`` of any worker starts them."""
    now = time.time()
    finished = [t for t in trials if t.state in FINISHED]
    running = [t for t in trials if t.state == TrialState.RUNNING]
    met = claimed = False
    if budget.trials is not None:
        met = met or len(finished) >= budget.trials
        claimed = claimed or len(finished) + len(running) >= budget.trials
    if budget.timeout_s is not None:
        used = sum(trial_seconds(t, now) for t in finished)
        met = met or used >= budget.timeout_s
        claimed = claimed or used + sum(trial_seconds(t, now) for t in running) >= budget.timeout_s
    return met, claimed, bool(running)


def _is_surplus(study: optuna.Study, trial: optuna.Trial, budget: Budget) -> bool:
    if budget.trials is None:
        return False
    alive = (*FINISHED, TrialState.RUNNING, TrialState.WAITING)
    before = [t for t in study.get_trials(deepcopy=False, states=alive) if t.number < trial.number]
    return len(before) >= budget.trials


def _repeats_defaults(study: optuna.Study, trial: optuna.Trial) -> bool:
    """True for a defaults trial when another, lower-numbered one exists.

    Workers that open a new study at the same moment may each enqueue the defaults; trial
    numbers are assigned by the storage, so the lowest-numbered defaults trial is the one run.
    """
    if not trial.user_attrs.get(DEFAULTS):
        return False
    return any(t.user_attrs.get(DEFAULTS) for t in study.get_trials(deepcopy=False) if t.number < trial.number)


def optimize(
    study: optuna.Study,
    objective: Callable[[optuna.Trial], float],
    *,
    budget: Budget,
    sampler_seed: int = 0,
    heartbeat_s: float = 60.0,
    poll_s: float | None = None,
    log: Callable[[str], None] = lambda _m: None,
) -> None:
    """Run trials of ``study`` until ``budget`` is met, sharing the study with any other workers.

    Returns when the finished trials fill the budget (and no trial is running), so the caller
    can read the best trial. ``objective`` may raise :class:`optuna.TrialPruned`. Any other
    exception fails that trial (its message kept in the user attribute ``crossbench:error``)
    and the loop goes on; 3 such failures before any trial finished, or ``2 * max(3, trials)``
    in all, end it with a :class:`CrossbenchError`. An interruption (Ctrl-C) fails the trial and propagates.
    """
    if budget.trials is None and budget.timeout_s is None:
        raise CrossbenchError("a tuning budget needs trials, a timeout, or both")
    poll = poll_s if poll_s is not None else max(0.2, min(1.0, heartbeat_s / 2))
    said: set[int] = set()  # running trials already named in a waiting line
    while True:
        trials = study.get_trials(deepcopy=False)
        retried = retry_stale(study, heartbeat_s=heartbeat_s, trials=trials)
        if retried:
            log(f"{study.study_name}: trial(s) {retried} lost their worker; enqueued again")
            continue
        met, claimed, running = _budget_state(trials, budget)
        if met and not running:
            return
        if met or claimed:  # the rest of the budget is being run by other workers
            others = {t.number for t in trials if t.state == TrialState.RUNNING}
            if not others <= said:
                text = waiting_text(study.study_name, trials, heartbeat_s=heartbeat_s)
                if text:
                    log(text)
                said |= others
            time.sleep(poll)
            continue
        trial = study.ask()
        if _is_surplus(study, trial, budget) or _repeats_defaults(study, trial):
            trial.set_user_attr(SURPLUS, True)
            study.tell(trial, state=TrialState.FAIL)
            continue
        study.sampler = _sampler(sampler_seed, trial.number)
        trial.set_user_attr(WORKER, this_worker())
        with _Heartbeat(study, trial, heartbeat_s):
            try:
                value = objective(trial)
            except optuna.exceptions.UpdateFinishedTrialError:  # given up as lost by another worker mid-run
                log(f"{study.study_name}: trial {trial.number} was given up as lost while it ran; its rerun counts instead")
                continue
            except optuna.TrialPruned:
                if _tell_unless_finished(study, trial, state=TrialState.PRUNED):
                    log(f"{study.study_name}: trial {trial.number} pruned")
                continue
            except Exception as exc:  # a configuration of the space that does not work: recorded, then the next
                if not _tell_unless_finished(study, trial, state=TrialState.FAIL, error=f"{type(exc).__name__}: {exc}"[:500]):
                    continue
                errors = [t for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)) if ERROR in t.user_attrs]
                log(f"{study.study_name}: trial {trial.number} failed: {type(exc).__name__}: {exc}")
                finished = study.get_trials(deepcopy=False, states=FINISHED)
                if (len(errors) >= 3 and not finished) or len(errors) >= 2 * max(3, budget.trials or 0):
                    raise CrossbenchError(
                        f"study {study.study_name!r}: {len(errors)} trials failed, the last with {type(exc).__name__}: {exc}; "
                        "fix the model or narrow its search space"
                    ) from exc
                continue
            except BaseException:  # interrupted: the trial is failed so that a later run draws a new one
                study.tell(trial, state=TrialState.FAIL)
                raise
        if not _tell_unless_finished(study, trial, value=value):
            log(f"{study.study_name}: trial {trial.number} was given up as lost while it ran; its rerun counts instead")


def _tell_unless_finished(
    study: optuna.Study, trial: optuna.Trial, *, value: float | None = None, state: TrialState | None = None, error: str | None = None
) -> bool:
    """Finish ``trial``; False when another worker already failed it as lost (its rerun counts instead)."""
    try:
        if error is not None:
            trial.set_user_attr(ERROR, error)
        if state is None:
            study.tell(trial, value)
        else:
            study.tell(trial, state=state)
    except optuna.exceptions.UpdateFinishedTrialError:
        return False
    return True


def _sampler(seed: int, number: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.TPESampler(seed=(seed * 1_000_003 + number) % 2**32, n_startup_trials=STARTUP_TRIALS)


def make_pruner(name: str) -> optuna.pruners.BasePruner:
    """``median``, ``hyperband`` or ``none``, on the per-epoch validation metric."""
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=STARTUP_TRIALS, n_warmup_steps=1)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1)
    return optuna.pruners.NopPruner()
