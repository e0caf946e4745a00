"""Hyperparameter tuning with Optuna: one study per reported split, on its validation users.

Each (target, seed, model) the benchmark reports is tuned on its own split's validation
users (a :class:`FitSplit`: the test users are not in it), so no trial sees a test user of
the split it serves. Every model gets the same budget (:class:`Budget`: trials and/or
seconds per model and split). The space is the model's own ``search_space`` plus each of its
components' spaces under a role prefix (:mod:`crossbench.plugin.build`).

Studies live in a storage (:mod:`crossbench.tune.storage`: SQLite in the results folder by default,
a journal file, or a database URL). Several ``crossbench tune`` processes, on one machine or
many, share a study by naming the same storage and study; the trial loop that makes this
safe is :mod:`crossbench.tune.trials`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import optuna
import torch
from optuna.study import StudyDirection
from optuna.trial import TrialState

from crossbench.data.protocols import FitSplit, exclude_for_validation, resolve_targets
from crossbench.errors import CrossbenchError
from crossbench.evaluate import evaluate
from crossbench.evaluate.distributed import evaluate_sharded
from crossbench.evaluate.rating import RATING_VALIDATION_METRIC, validation_rmse
from crossbench.evaluate.validation import objective_metrics
from crossbench.experiment.checks import dataset_params, pick_device, validate
from crossbench.plugin.build import component_space, default_values, make_protocol, make_recommender, own_space
from crossbench.plugin.experiment import Experiment, ModelRef, RunOptions, TuningSettings
from crossbench.plugin.interfaces import RunEnv
from crossbench.plugin.registry import Registry
from crossbench.plugin.specs import CategoricalParam, FloatParam, IntParam, Param
from crossbench.progress import duration
from crossbench.train.distributed import Stopped, ranks, validation_means
from crossbench.tune.plots import write_study_plots
from crossbench.tune.storage import StorageSpec, open_storage, resolve_storage
from crossbench.tune.trials import DEFAULTS, ERROR, FINISHED, SURPLUS, Budget, make_pruner, optimize, trial_seconds
from crossbench.version import __version__


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


#: the study's metadata: one user attribute, written in one storage write (never read half-written)
META = "crossbench:meta"
#: what a worker compares before sharing a study
COMPARED = ("crossbench:split_fingerprint", "crossbench:objective", "crossbench:budget", "crossbench:model", "crossbench:space")
#: how long a worker waits for the metadata of a study made by an older crossbench, written one field at a time
_LEGACY_WAIT_S = 10.0


def _saved_meta(study: optuna.Study) -> dict[str, Any] | None:
    """The study's metadata, or ``None`` when none is written yet.

    Studies made by this version hold it in :data:`META`, one write. Studies made by older
    versions hold one attribute per field, written one by one: a study with only some of them
    is being written by such a worker, and is read again until every compared field is there
    (for at most ``_LEGACY_WAIT_S`` seconds).
    """
    deadline = time.monotonic() + _LEGACY_WAIT_S
    while True:
        saved = study.user_attrs
        if isinstance(saved.get(META), dict):
            return dict(saved[META])
        legacy = {k: v for k, v in saved.items() if k.startswith("crossbench:")}
        if not legacy:
            return None
        if all(k in legacy for k in COMPARED) or time.monotonic() > deadline:
            return legacy
        time.sleep(0.05)


def open_study(spec: StorageSpec, name: str, meta: dict[str, Any], *, pruner: str, defaults: Mapping[str, Any] | None = None,
               direction: StudyDirection = StudyDirection.MAXIMIZE) -> optuna.Study:
    """Open (or create) the study ``name`` in ``spec`` for the run described by ``meta``; what every
    ``crossbench tune`` process, worker or not, calls.

    A new study gets ``meta`` in one write and, with ``defaults``, the defaults trial enqueued;
    an existing one is shared only when its metadata agrees on every :data:`COMPARED` field
    (else one line naming the field). Workers that open a new study at the same instant both
    write the same metadata (one write each, so never half of it) and then compare what the
    storage holds, so they always share the study.
    """
    storage = open_storage(spec, heartbeat_interval=None)
    study = optuna.create_study(study_name=name, storage=storage, direction=direction, load_if_exists=True,
                                pruner=make_pruner(pruner))
    saved = _saved_meta(study)
    if saved is None:
        study.set_user_attr(META, meta)
        saved = _saved_meta(study) or meta  # a worker writing at the same moment: the last write stands, and is compared
    for key in COMPARED:
        if saved.get(key) != meta[key]:
            raise CrossbenchError(
                f"study {name!r} in {spec.display} was made for another {key.split(':')[1].replace('_', ' ')} "
                f"({str(saved.get(key))[:100]}, this run: {str(meta[key])[:100]}); use another --study or --storage"
            )
    if defaults is not None and not study.get_trials(deepcopy=False):
        # the first trial of every study is the model's defaults: tuning starts from them, never below them
        study.enqueue_trial(dict(defaults), user_attrs={DEFAULTS: True}, skip_if_exists=True)
    return study


def _study_record(trials: list[optuna.trial.FrozenTrial], complete: list[optuna.trial.FrozenTrial], best: optuna.trial.FrozenTrial, *,
                  settings: TuningSettings, key: str, sampler_seed: int, name: str, storage: str) -> dict[str, Any]:
    """What a run record says about how its model was tuned."""
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
        "seconds": sum(trial_seconds(t, now) for t in trials if t.state in FINISHED),
        "sampler": "TPESampler",
        "sampler_seed": sampler_seed,
        "pruner": settings.pruner,
        "study": name,
        "storage": storage,
        "space": sorted({k for t in trials for k in t.params}),
        "params": dict(best.params),
        "selected_on": "validation users",
    }
    return record


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
    if not ranks().writes:  # data-parallel: rank 0 runs the study, this rank fits each trial with it
        return _follow(m, view, registry=registry, device=device, options=options, seed=seed, settings=settings)
    spec = resolve_storage(settings.storage, results_dir=options.output_dir)
    name = study_name(exp, settings, target=view.target, seed=seed, label=m.display)
    meta = _metadata(exp, m, settings, target=view.target, seed=seed, split_fingerprint=split_fingerprint,
                     dataset_fingerprint=dataset_fingerprint, space=space)
    rating = view.evaluation.kind == "rating"  # the rating task selects on the validation users' RMSE, lower is better
    key = RATING_VALIDATION_METRIC if rating else settings.objective
    meta["crossbench:objective"] = key
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = open_study(spec, name, meta, pruner=settings.pruner, defaults=default_values(registry, m.name, default, space),
                       direction=StudyDirection.MINIMIZE if rating else StudyDirection.MAXIMIZE)
    metric = objective_metrics(registry, settings.metric)
    label = f"{m.display} on {view.target} seed {seed}"
    log(_tuning_line(label, study, settings, n_params=len(space), n_valid=view.valid.n_users))

    def objective(trial: optuna.Trial) -> float:
        params = {**m.params, **{p.name: suggest(trial, p) for p in own_space(registry, m.name, m.params)}}
        model = make_recommender(registry, m.name, params, where=where)
        extra = {p.name: suggest(trial, p) for p in component_space(registry, m.name, model, params)}
        if extra:
            model = make_recommender(registry, m.name, {**params, **extra}, where=where)
        ranks().agree(("trial", {**params, **extra}))  # the other ranks (if any) fit this trial with this one

        def report(epoch: int, value: float) -> None:
            trial.report(value, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"epoch {epoch}: {key}={value:.4f}")

        position = _trial_position(study, settings)
        log(f"{label}: {position}: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in trial.params.items()))
        torch.manual_seed(seed)
        env = RunEnv(registry=registry, device=device, seed=seed, progress=options.progress, cache_dir=options.cache_dir,
                     on_epoch=report)
        t0 = time.perf_counter()
        model.fit(view, env=env)
        if rating:
            value = validation_rmse(model.predict_ratings, view.valid, device=device)
        else:
            value = float(_validation(model, view, metric=metric, k=settings.k, device=device)[key])
        log(f"{label}: {position} done: {key} {value:.4f}, {_best_so_far(study, value, lower=rating)}; "
            f"{duration(time.perf_counter() - t0)}")
        return value if math.isfinite(value) else (math.inf if rating else 0.0)

    base_seed = seed if settings.sampler_seed is None else settings.sampler_seed
    optimize(study, objective, budget=Budget(settings.trials, settings.timeout_s), sampler_seed=base_seed,
             heartbeat_s=settings.heartbeat_s, log=log)
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if not complete:
        raise CrossbenchError(ranks().agree(("failed", _all_failed(name)))[1])  # every rank raises it
    best = (min(complete, key=lambda t: (t.value, t.number)) if rating
            else max(complete, key=lambda t: (t.value, -t.number)))
    if plots:
        write_study_plots(study, options.output_dir / "studies", stem=name.replace("/", "-"))
    record = _study_record(trials, complete, best, settings=settings, key=key, sampler_seed=base_seed, name=name, storage=spec.display)
    ranks().agree(("done", {"params": dict(best.params), "record": record}))
    return TuningOutcome(params=dict(best.params), record=record)


def _all_failed(study: str) -> str:
    return f"study {study!r}: every trial was pruned or failed; raise the budget or use --pruner none"


def _follow(m: ModelRef, view: FitSplit, *, registry: Registry, device: torch.device, options: RunOptions, seed: int,
            settings: TuningSettings) -> TuningOutcome:
    """A rank other than 0 during data-parallel tuning: fit every trial rank 0 sends, with it (pruned
    trials stop on every rank), then take the outcome rank 0 sends."""
    while True:
        kind, payload = ranks().agree(None)
        if kind == "done":
            return TuningOutcome(params=payload["params"], record=payload["record"])
        if kind == "failed":
            raise CrossbenchError(payload)
        model = make_recommender(registry, m.name, payload, where=f"model {m.display!r}")
        torch.manual_seed(seed)
        try:
            model.fit(view, env=RunEnv(registry=registry, device=device, seed=seed, progress=False, cache_dir=options.cache_dir))
        except Stopped:
            continue
        if view.evaluation.kind != "rating":  # rank 0 measures the rating task's error alone
            _validation(model, view, metric=objective_metrics(registry, settings.metric), k=settings.k, device=device)


def _validation(model: Any, view: FitSplit, *, metric: Mapping[str, Any], k: int, device: torch.device) -> Mapping[str, float]:
    """The means of ``metric@k`` of ``model`` on ``view``'s validation users (sharded over the ranks, if several)."""
    return validation_means(evaluate, evaluate_sharded, score_fn=model.score, truth=view.valid, metrics=metric, ks=[k],
                            n_items=view.train.domain(view.target).n_items, exclude=exclude_for_validation(view),
                            device=device)


def _tuning_line(label: str, study: optuna.Study, settings: TuningSettings, *, n_params: int, n_valid: int) -> str:
    """What tuning one model on one split is about to do."""
    budget = " and at most ".join(
        part for part in (f"{settings.trials} trials" if settings.trials is not None else "",
                          f"{duration(settings.timeout_s)} of trials" if settings.timeout_s is not None else "") if part
    )
    done = len(study.get_trials(deepcopy=False, states=FINISHED))
    resumed = f"; {done} finished earlier" if done else ""
    return f"tuning {label}: {budget}, {n_params} hyperparameters, on {n_valid} validation users{resumed}"


def _trial_position(study: optuna.Study, settings: TuningSettings) -> str:
    """``trial 4 of 6``: the finished trials so far plus this one, of the budget's trials."""
    n = len(study.get_trials(deepcopy=False, states=FINISHED)) + 1
    return f"trial {n} of {settings.trials}" if settings.trials is not None else f"trial {n}"


def _best_so_far(study: optuna.Study, value: float, *, lower: bool = False) -> str:
    """``best so far 0.1301``: the best finished trial's value, this trial's included (the lowest when ``lower``)."""
    values = [t.value for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.value is not None]
    return f"best so far {(min if lower else max)([value, *values]):.4f}"


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
