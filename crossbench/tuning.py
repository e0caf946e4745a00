"""Hyperparameter tuning with Optuna on the validation users only.

Every model gets the same number of trials (an equal budget). A trial fits the model with
sampled hyperparameters on the training data of the first seed's split and scores it on
that split's *validation* ground truth; the test ground truth is never read here. The best
hyperparameters then go into the normal run, whose records say how they were found.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import optuna

from crossbench.data.protocols import make_protocol, resolve_targets
from crossbench.errors import CrossbenchError
from crossbench.evaluate import evaluate
from crossbench.experiment import Experiment, ModelRef, RunOptions, pick_device, validate
from crossbench.interfaces import CategoricalParam, FloatParam, IntParam, Param, RunEnv
from crossbench.registry import Registry
from crossbench.train import train_items


@dataclass(frozen=True)
class TuningResult:
    """The best hyperparameters of one model and how they were found."""

    label: str
    params: Mapping[str, Any]
    best_value: float
    metric: str
    trials: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "params": dict(self.params), "best_valid": self.best_value, "metric": self.metric,
            "trials": self.trials, "seconds": self.seconds, "sampler": "optuna TPE", "selected_on": "validation users",
        }


def suggest(trial: optuna.Trial, param: Param) -> Any:
    """Sample one typed hyperparameter."""
    if isinstance(param, IntParam):
        return trial.suggest_int(param.name, param.low, param.high, log=param.log, step=param.step)
    if isinstance(param, FloatParam):
        return trial.suggest_float(param.name, param.low, param.high, log=param.log)
    if isinstance(param, CategoricalParam):
        return trial.suggest_categorical(param.name, list(param.choices))
    raise TypeError(f"unknown parameter type {type(param).__name__}")


def tune_experiment(
    exp: Experiment,
    *,
    registry: Registry,
    options: RunOptions,
    trials: int,
    metric: str = "ndcg",
    k: int = 10,
    log: Callable[[str], None] = lambda _m: None,
) -> tuple[Experiment, dict[str, TuningResult]]:
    """Tune every model that declares a search space; return the experiment with the best values."""
    if trials < 1:
        raise CrossbenchError(f"--trials must be at least 1, got {trials}")
    validate(exp, registry)
    registry.metrics([metric])
    device = pick_device(options.device)
    data = registry.get("datasets", exp.dataset.name).factory(**exp.dataset.params).load()
    target = resolve_targets(data, list(exp.protocol.targets) or None)[0]
    seed = exp.seeds[0]
    split = make_protocol(exp.protocol.name, target=target, seed=seed, **exp.protocol.params).split(data)
    if split.valid.n_users == 0:
        raise CrossbenchError("tuning needs validation users; set the protocol's valid_fraction above 0")
    exclude = train_items(split.train, split.target)
    n_items = split.train.domain(split.target).n_items
    key = f"{metric}@{k}"
    results: dict[str, TuningResult] = {}
    models = []
    for m in exp.models:
        spec = registry.get("recommenders", m.name)
        space = [p for p in spec.search_space if p.name not in m.params]
        if not space:
            models.append(m)
            continue
        t0 = time.perf_counter()

        def objective(trial: optuna.Trial, m: ModelRef = m, space: list[Param] = space, spec: Any = spec) -> float:
            params = {**m.params, **{p.name: suggest(trial, p) for p in space}}
            model = spec.factory(**params)
            env = RunEnv(registry=registry, device=device, seed=seed, progress=False, cache_dir=options.cache_dir)
            model.fit(split, env=env)
            res = evaluate(model.score, split.valid, n_items=n_items, metrics=registry.metrics([metric]), ks=[k],
                           exclude=exclude, device=device)
            value = res.means[key]
            log(f"{m.display}: trial {trial.number}: {key}={value:.4f} {dict(trial.params)}")
            return value

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
        study.optimize(objective, n_trials=trials)
        best = {**m.params, **study.best_params}
        results[m.display] = TuningResult(m.display, study.best_params, float(study.best_value), key, trials, time.perf_counter() - t0)
        models.append(replace(m, params=best))
    return replace(exp, models=tuple(models)), results
