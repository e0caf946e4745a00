"""Hyperparameter tuning with Optuna: one study per reported split, on its validation users.

Each (target, seed, model) the benchmark reports is tuned on its own split's validation
users (a :class:`FitSplit`: the test users are not in it), so no trial sees a test user of
the split it serves. Every model gets the same budget (:class:`Budget`: trials and/or
seconds per model and split). The space is the model's own ``search_space`` plus each of its
components' spaces under a role prefix (:mod:`crossbench.plugin.build`).

Studies live in a storage (:mod:`crossbench.tune.storage`: SQLite in the results folder by default,
a journal file, or a database URL). Several ``crossbench tune`` processes, on one machine or
many, share a study by naming the same storage and study. The loop here is storage-agnostic:

- a trial's number is handed out by the storage; a worker whose new trial would exceed the
  trial budget (counting finished, running and waiting trials with lower numbers) tells it
  FAIL with the user attribute ``crossbench:surplus`` and claims nothing more; so does a
  worker handed a second copy of the defaults trial (two workers opening a new study at once
  may each enqueue it: the lowest-numbered copy is the one run);
- a running trial writes a heartbeat (user attribute ``crossbench:heartbeat``) every
  ``heartbeat_s`` seconds; one silent for ``2 * heartbeat_s`` belongs to a dead worker and is
  told FAIL and enqueued again with the same parameters (``crossbench:retry_of``);
- each trial's sampler is a TPE sampler seeded with ``(sampler seed, trial number)``, so two
  workers never draw the same random start and a resumed study continues where it stopped;
- the first trial of a new study is the model's defaults (``crossbench:defaults``), so the
  budget is the defaults plus ``trials - 1`` sampled configurations, for every model alike.

Completed trials are never rerun: a study killed at any point resumes with every finished
trial kept.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import optuna
import torch
from optuna.trial import TrialState

from crossbench.data.protocols import FitSplit, resolve_targets, train_items
from crossbench.errors import CrossbenchError
from crossbench.evaluate import evaluate
from crossbench.evaluate.validation import objective_metrics
from crossbench.experiment.checks import dataset_params, pick_device, validate
from crossbench.plugin.build import component_space, default_values, make_protocol, make_recommender, own_space
from crossbench.plugin.experiment import Experiment, ModelRef, RunOptions, TuningSettings
from crossbench.plugin.interfaces import RunEnv
from crossbench.plugin.registry import Registry
from crossbench.plugin.specs import CategoricalParam, FloatParam, IntParam, Param
from crossbench.tune.storage import StorageSpec, open_storage, resolve_storage, write_study_plots
from crossbench.version import __version__

SURPLUS = "crossbench:surplus"
HEARTBEAT = "crossbench:heartbeat"
RETRY_OF = "crossbench:retry_of"
DEFAULTS = "crossbench:defaults"
ERROR = "crossbench:error"
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


@dataclass(frozen=True)
class TuningOutcome:
    """The best hyperparameters of one model on one split, and the record of how they were found."""

    params: Mapping[str, Any]
    record: dict[str, Any]


def suggest(trial: optuna.Trial, param: Param) -> Any:
    """Sample one typed hyperparameter."""
    if isinstance(param, IntParam):
        return trial.suggest_int(param.name, param.low, param.high, log=param.log, step=param.step)
    if isinstance(param, FloatParam):
        return trial.suggest_float(param.name, param.low, param.high, log=param.log)
    if isinstance(param, CategoricalParam):
        return trial.suggest_categorical(param.name, list(param.choices))
    raise TypeError(f"unknown parameter type {type(param).__name__}")


# ------------------------------------------------------------------------------ the loop


def _seconds(t: optuna.trial.FrozenTrial, now: float) -> float:
    if t.datetime_start is None:
        return 0.0
    end = t.datetime_complete.timestamp() if t.datetime_complete is not None else now
    return max(0.0, end - t.datetime_start.timestamp())


def _heartbeat_of(t: optuna.trial.FrozenTrial) -> float:
    beat = t.user_attrs.get(HEARTBEAT)
    if isinstance(beat, (int, float)):
        return float(beat)
    return t.datetime_start.timestamp() if t.datetime_start is not None else time.time()


def retry_stale(study: optuna.Study, *, heartbeat_s: float, trials: list[optuna.trial.FrozenTrial] | None = None) -> list[int]:
    """Fail the running trials whose heartbeat stopped and enqueue each again; their numbers."""
    now = time.time()
    retried = []
    running = [t for t in (trials if trials is not None else study.get_trials(deepcopy=False)) if t.state == TrialState.RUNNING]
    for t in running:
        if now - _heartbeat_of(t) <= 2 * heartbeat_s:
            continue
        try:
            study._storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)
        except (RuntimeError, ValueError):  # another worker finished or failed it first
            continue
        study.enqueue_trial(dict(t.params), user_attrs={RETRY_OF: t.number}, skip_if_exists=False)
        retried.append(t.number)
    return retried


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
        used = sum(_seconds(t, now) for t in finished)
        met = met or used >= budget.timeout_s
        claimed = claimed or used + sum(_seconds(t, now) for t in running) >= budget.timeout_s
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
    while True:
        trials = study.get_trials(deepcopy=False)
        retried = retry_stale(study, heartbeat_s=heartbeat_s, trials=trials)
        if retried:
            log(f"{study.study_name}: trial(s) {retried} lost their worker; enqueued again")
            continue
        met, claimed, running = _budget_state(trials, budget)
        if met and not running:
            return
        if met or claimed:
            time.sleep(poll)  # the rest of the budget is being run by other workers
            continue
        trial = study.ask()
        if _is_surplus(study, trial, budget) or _repeats_defaults(study, trial):
            trial.set_user_attr(SURPLUS, True)
            study.tell(trial, state=TrialState.FAIL)
            continue
        study.sampler = _sampler(sampler_seed, trial.number)
        with _Heartbeat(study, trial, heartbeat_s):
            try:
                value = objective(trial)
            except optuna.TrialPruned:
                study.tell(trial, state=TrialState.PRUNED)
                log(f"{study.study_name}: trial {trial.number} pruned")
                continue
            except Exception as exc:  # a configuration of the space that does not work: recorded, then the next
                trial.set_user_attr(ERROR, f"{type(exc).__name__}: {exc}"[:500])
                study.tell(trial, state=TrialState.FAIL)
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
        try:
            study.tell(trial, value)
        except optuna.exceptions.UpdateFinishedTrialError:  # taken for lost (no heartbeat for too long) and rerun
            log(f"{study.study_name}: trial {trial.number} was given up as lost while it ran; its rerun counts instead")


def _sampler(seed: int, number: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.TPESampler(seed=(seed * 1_000_003 + number) % 2**32, n_startup_trials=STARTUP_TRIALS)


def make_pruner(name: str) -> optuna.pruners.BasePruner:
    """``median``, ``hyperband`` or ``none``, on the per-epoch validation metric."""
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=STARTUP_TRIALS, n_warmup_steps=1)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1)
    return optuna.pruners.NopPruner()


# ------------------------------------------------------------------------------ per split


def check_tuning(exp: Experiment, settings: TuningSettings, *, registry: Registry, results_dir: Any) -> StorageSpec:
    """Every tuning setting and the storage, checked before any work."""
    settings.check()
    objective_metrics(registry, settings.metric)
    return resolve_storage(settings.storage, results_dir=results_dir)


def study_name(exp: Experiment, settings: TuningSettings, *, target: str, seed: int, label: str) -> str:
    return f"{settings.study or exp.name}/{target}/seed{seed}/{label}"


def _metadata(exp: Experiment, m: ModelRef, settings: TuningSettings, *, target: str, seed: int,
              split_fingerprint: str, dataset_fingerprint: str, space: list[Param]) -> dict[str, Any]:
    return {
        "crossbench:space": [repr(p) for p in space],
        "crossbench:version": __version__, "crossbench:optuna": optuna.__version__, "crossbench:torch": torch.__version__,
        "crossbench:model": m.name, "crossbench:label": m.display, "crossbench:target": target, "crossbench:seed": seed,
        "crossbench:dataset_fingerprint": dataset_fingerprint, "crossbench:split_fingerprint": split_fingerprint,
        "crossbench:objective": settings.objective, "crossbench:budget": Budget(settings.trials, settings.timeout_s).to_dict(),
        "crossbench:pruner": settings.pruner,
    }


def _open_study(name: str, storage: optuna.storages.BaseStorage, meta: dict[str, Any], pruner: str, *, display: str) -> optuna.Study:
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize", load_if_exists=True,
                                pruner=make_pruner(pruner))
    saved = study.user_attrs
    if not saved:
        for key, value in meta.items():
            study.set_user_attr(key, value)
        return study
    for key in ("crossbench:split_fingerprint", "crossbench:objective", "crossbench:budget", "crossbench:model", "crossbench:space"):
        if saved.get(key) != meta[key]:
            raise CrossbenchError(
                f"study {name!r} in {display} was made for another {key.split(':')[1].replace('_', ' ')} "
                f"({saved.get(key)!r}, this run: {meta[key]!r}); use another --study or --storage"
            )
    return study


def tune_split(
    exp: Experiment,
    m: ModelRef,
    view: FitSplit,
    *,
    seed: int,
    split_fingerprint: str,
    dataset_fingerprint: str,
    registry: Registry,
    device: torch.device,
    options: RunOptions,
    settings: TuningSettings,
    log: Callable[[str], None] = lambda _m: None,
    plots: bool = True,
) -> TuningOutcome | None:
    """Tune ``m`` on ``view``'s validation users to the budget; ``None`` when it has nothing to tune."""
    where = f"model {m.display!r}"
    default = make_recommender(registry, m.name, m.params, where=where)
    space = own_space(registry, m.name, m.params) + component_space(registry, m.name, default, m.params)
    if not space:
        return None
    spec = resolve_storage(settings.storage, results_dir=options.output_dir)
    storage = open_storage(spec, heartbeat_interval=None)
    name = study_name(exp, settings, target=view.target, seed=seed, label=m.display)
    meta = _metadata(exp, m, settings, target=view.target, seed=seed, split_fingerprint=split_fingerprint,
                     dataset_fingerprint=dataset_fingerprint, space=space)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = _open_study(name, storage, meta, settings.pruner, display=spec.display)
    if not study.get_trials(deepcopy=False):
        # the first trial of every study is the model's defaults: tuning starts from them, never below them
        study.enqueue_trial(default_values(registry, m.name, default, space), user_attrs={DEFAULTS: True}, skip_if_exists=True)
    exclude = train_items(view.train, view.target)
    n_items = view.train.domain(view.target).n_items
    metric = objective_metrics(registry, settings.metric)
    key = settings.objective

    def objective(trial: optuna.Trial) -> float:
        params = {**m.params, **{p.name: suggest(trial, p) for p in own_space(registry, m.name, m.params)}}
        model = make_recommender(registry, m.name, params, where=where)
        extra = {p.name: suggest(trial, p) for p in component_space(registry, m.name, model, params)}
        if extra:
            model = make_recommender(registry, m.name, {**params, **extra}, where=where)

        def report(epoch: int, value: float) -> None:
            trial.report(value, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"epoch {epoch}: {key}={value:.4f}")

        torch.manual_seed(seed)
        env = RunEnv(registry=registry, device=device, seed=seed, progress=False, cache_dir=options.cache_dir, on_epoch=report)
        model.fit(view, env=env)
        res = evaluate(model.score, view.valid, n_items=n_items, metrics=metric, ks=[settings.k], exclude=exclude, device=device)
        value = float(res.means[key])
        log(f"{m.display}: target {view.target}, seed {seed}: trial {trial.number}: {key}={value:.4f} {dict(trial.params)}")
        return value if math.isfinite(value) else 0.0

    base_seed = seed if settings.sampler_seed is None else settings.sampler_seed
    optimize(study, objective, budget=Budget(settings.trials, settings.timeout_s), sampler_seed=base_seed,
             heartbeat_s=settings.heartbeat_s, log=log)
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if not complete:
        raise CrossbenchError(f"study {name!r}: every trial was pruned or failed; raise the budget or use --pruner none")
    best = max(complete, key=lambda t: (t.value, -t.number))
    if plots:
        write_study_plots(study, options.output_dir / "studies", stem=name.replace("/", "-"))
    now = time.time()
    record = {
        "tuned": True,
        "budget": Budget(settings.trials, settings.timeout_s).to_dict(),
        "trials_complete": len(complete),
        "trials_pruned": sum(t.state == TrialState.PRUNED for t in trials),
        "trials_failed": sum(t.state == TrialState.FAIL and not t.user_attrs.get(SURPLUS) for t in trials),
        "errors": sorted({str(t.user_attrs[ERROR]) for t in trials if ERROR in t.user_attrs})[:5],
        "best_valid": float(best.value),  # type: ignore[arg-type]
        "best_trial": best.number,
        "metric": key,
        "seconds": sum(_seconds(t, now) for t in trials if t.state in FINISHED),
        "sampler": "TPESampler",
        "sampler_seed": base_seed,
        "pruner": settings.pruner,
        "study": name,
        "storage": spec.display,
        "space": sorted({k for t in trials for k in t.params}),
        "params": dict(best.params),
        "selected_on": "validation users",
    }
    return TuningOutcome(params=dict(best.params), record=record)


def work(
    exp: Experiment, *, registry: Registry, options: RunOptions, settings: TuningSettings,
    log: Callable[[str], None] = lambda _m: None,
) -> int:
    """Contribute trials to every study of ``exp`` until each budget is met; no test evaluation.

    Returns the number of studies worked on. Several workers (and one ``crossbench tune``
    without ``--worker``, which then fits and evaluates the best) can share the storage.
    """
    validate(exp, registry)
    check_tuning(exp, settings, registry=registry, results_dir=options.output_dir)
    device = pick_device(options.device)
    data = registry.get("datasets", exp.dataset.name).factory(**dataset_params(exp, registry)).load()
    n = 0
    for target in resolve_targets(data, list(exp.protocol.targets) or None):
        for seed in exp.seeds:
            split = make_protocol(registry, exp.protocol.name, target=target, seed=seed, **exp.protocol.params).split(data)
            view, split_fp = split.fit_view(), split.fingerprint()
            for m in exp.models:
                outcome = tune_split(exp, m, view, seed=seed, split_fingerprint=split_fp, dataset_fingerprint=data.fingerprint(),
                                     registry=registry, device=device, options=options, settings=settings, log=log, plots=False)
                n += outcome is not None
    return n
