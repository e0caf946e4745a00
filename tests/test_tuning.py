"""Optuna tuning: per-split studies on validation users, equal budgets, pruning, planted optima."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import optuna
import pytest
import torch
from click.testing import CliRunner
from optuna.trial import TrialState

from crossbench import hookimpl
from crossbench.cli import CliState, cli
from crossbench.data.protocols import FitSplit
from crossbench.errors import CrossbenchError
from crossbench.experiment import DatasetRef, ModelRef, RunOptions, TuningSettings
from crossbench.plugin.build import make_protocol
from crossbench.plugin.interfaces import FitReport, Recommender, RunEnv
from crossbench.plugin.manager import get_plugin_manager
from crossbench.plugin.registry import Registry
from crossbench.plugin.specs import ComponentSpec, FloatParam, IntParam
from crossbench.run.runner import run_experiment
from crossbench.tune.trials import Budget, optimize
from crossbench.tune.tuning import tune_split
from crossbench_basic import DEFAULT_EXPERIMENT

SMALL = {"n_users": 600, "n_items": 150}


class Spy(Recommender):
    """Scores items by a noisy popularity; remembers whom it scored and what fit received."""

    scored: list[np.ndarray] = []
    fitted: list[float] = []
    views: list[object] = []

    def __init__(self, *, noise: float = 0.0, epochs: int = 0) -> None:
        self.noise, self.epochs = noise, epochs

    def fit(self, split, *, env):
        Spy.fitted.append(self.noise)
        Spy.views.append(split)
        dom = split.train.domain(split.target)
        counts = np.bincount(dom.interactions["item"], minlength=dom.n_items).astype(np.float32)
        rng = np.random.default_rng(0)
        self.scores = torch.as_tensor(counts + self.noise * rng.standard_normal(dom.n_items).astype(np.float32) * counts.std())
        for epoch in range(1, self.epochs + 1):  # a learning curve that ends at 1 - noise
            if env.on_epoch is not None:
                env.on_epoch(epoch, (1.0 - self.noise / 3.0) * epoch / self.epochs)
        return FitReport(epochs=self.epochs)

    def score(self, users, *, out=None):
        Spy.scored.append(users.cpu().numpy().copy())
        return self.scores.unsqueeze(0).expand(len(users), -1)


class SpyPlugin:
    @hookimpl
    def crossbench_recommenders(self):
        return [ComponentSpec("spy", Spy, "spy", (FloatParam("noise", 0.0, 3.0),))]


def _registry() -> Registry:
    return Registry(get_plugin_manager([SpyPlugin()]))


def _split(registry: Registry, seed: int):
    data = registry.get("datasets", "synthetic").factory(**SMALL).load()
    return data, make_protocol(registry, "cold-start", target="movies", seed=seed, test_fraction=0.5, valid_fraction=0.1).split(data)


def test_planted_optimum_of_a_toy_objective_is_found():
    study = optuna.create_study(direction="maximize")

    def objective(trial):
        x, y = trial.suggest_float("x", 0.0, 1.0), trial.suggest_float("y", 0.0, 1.0)
        return -((x - 0.3) ** 2) - (y - 0.7) ** 2

    optimize(study, objective, budget=Budget(trials=40), sampler_seed=0, heartbeat_s=5)
    assert len(study.trials) == 40
    assert abs(study.best_params["x"] - 0.3) < 0.1 and abs(study.best_params["y"] - 0.7) < 0.1


@pytest.mark.parametrize("seed", [0, 1])
def test_each_split_is_tuned_on_its_own_validation_users(tmp_path, seed):
    registry = _registry()
    data, split = _split(registry, seed)
    Spy.scored, Spy.fitted, Spy.views = [], [], []
    settings = TuningSettings(trials=6, pruner="none")
    outcome = tune_split(
        replace(DEFAULT_EXPERIMENT, models=(ModelRef("spy"),)), ModelRef("spy"), split.fit_view(), seed=seed,
        split_fingerprint=split.fingerprint(), dataset_fingerprint=data.fingerprint(), registry=registry,
        device=torch.device("cpu"), options=RunOptions(output_dir=tmp_path, progress=False), settings=settings,
    )
    assert len(Spy.fitted) == 6
    assert all(isinstance(v, FitSplit) for v in Spy.views)
    seen = np.unique(np.concatenate(Spy.scored))
    assert np.array_equal(seen, split.valid.users)
    assert not np.intersect1d(seen, split.test.users).size
    # the first trial is the defaults (noise 0); the low-noise end of the range wins
    assert Spy.fitted[0] == 0.0
    assert outcome.params["noise"] <= sorted(Spy.fitted)[1] < 0.5
    rec = outcome.record
    assert rec["trials_complete"] == 6 and rec["trials_pruned"] == 0 and rec["budget"] == {"trials": 6, "timeout_s": None}
    assert rec["study"] == f"default/movies/seed{seed}/spy" and rec["sampler_seed"] == seed and rec["space"] == ["noise"]
    assert (tmp_path / "tuning.db").is_file()


def test_median_pruner_prunes_trials_with_worse_learning_curves(tmp_path):
    registry = _registry()
    data, split = _split(registry, 0)
    Spy.fitted = []
    outcome = tune_split(
        DEFAULT_EXPERIMENT, ModelRef("spy", {"epochs": 8}), split.fit_view(), seed=0, split_fingerprint=split.fingerprint(),
        dataset_fingerprint=data.fingerprint(), registry=registry, device=torch.device("cpu"),
        options=RunOptions(output_dir=tmp_path, progress=False), settings=TuningSettings(trials=20, pruner="median"),
    )
    assert outcome.record["trials_pruned"] > 0
    assert outcome.record["trials_complete"] + outcome.record["trials_pruned"] == 20
    study = optuna.load_study(study_name=outcome.record["study"], storage=f"sqlite:///{tmp_path / 'tuning.db'}")
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    # a pruned trial stopped before its last epoch, below the median of the earlier trials at that epoch
    assert all(max(t.intermediate_values) < 8 for t in pruned)
    assert np.mean([t.params["noise"] for t in pruned]) > np.mean([t.params["noise"] for t in complete])


def test_trainer_reports_every_epoch_and_can_be_stopped():
    registry = Registry(get_plugin_manager())
    _, split = _split(registry, 0)
    seen = []

    def on_epoch(epoch, value):
        seen.append((epoch, value))
        if epoch == 2:
            raise optuna.TrialPruned()

    model = registry.get("recommenders", "mf").factory(epochs=5, dim=8)
    with pytest.raises(optuna.TrialPruned):
        model.fit(split.fit_view(), env=RunEnv(registry=registry, progress=False, on_epoch=on_epoch))
    assert [e for e, _ in seen] == [1, 2] and all(0 <= v <= 1 for _, v in seen)


def test_component_spaces_are_tuned_under_role_prefixes(tmp_path):
    registry = Registry(get_plugin_manager())
    data, split = _split(registry, 0)
    m = ModelRef("composed", {"fusion": "attention", "epochs": 1, "dim": 16, "lr": 0.01, "l2": 1e-6, "negatives": 2,
                              "batch_size": 1024, "target_history_dropout": 0.5})
    outcome = tune_split(
        DEFAULT_EXPERIMENT, m, split.fit_view(), seed=0, split_fingerprint=split.fingerprint(), dataset_fingerprint=data.fingerprint(),
        registry=registry, device=torch.device("cpu"), options=RunOptions(output_dir=tmp_path, progress=False),
        settings=TuningSettings(trials=2, pruner="none"), plots=False,
    )
    # only the components' own spaces are left: the id item encoder's init_std and the attention fusion's heads
    assert outcome.record["space"] == ["fusion.heads", "item_encoder.init_std"]
    assert outcome.params["fusion.heads"] in (1, 2, 4)


def test_tune_then_run_records_how_each_split_was_tuned(tmp_path):
    registry = _registry()
    exp = replace(DEFAULT_EXPERIMENT, dataset=DatasetRef("synthetic", SMALL), models=(ModelRef("spy"), ModelRef("popularity")), seeds=(0, 1))
    records, markdown = run_experiment(exp, registry=registry, options=RunOptions(output_dir=tmp_path / "o", progress=False),
                                       tuning=TuningSettings(trials=3, pruner="none"))
    spy = sorted((r for r in records if r["model"]["name"] == "spy"), key=lambda r: r["seed"])
    assert [r["model"]["tuning"]["study"] for r in spy] == ["default/movies/seed0/spy", "default/movies/seed1/spy"]
    for r in spy:
        assert r["model"]["params"]["noise"] == r["model"]["tuning"]["params"]["noise"]
        assert r["model"]["tuning"]["selected_on"] == "validation users"
    assert all(r["model"]["tuning"] is None for r in records if r["model"]["name"] == "popularity")
    assert sorted(p.name for p in (tmp_path / "o" / "studies").glob("*history*.png")) != []


def test_tune_command_records_tuning(tmp_path):
    state = CliState(extra_plugins=[SpyPlugin()])
    out = CliRunner().invoke(
        cli,
        ["tune", "--model", "spy", "--dataset-param", "n_users=500", "--dataset-param", "n_items=120",
         "--seeds", "0", "--trials", "3", "--timeout", "600", "-q", "--output", str(tmp_path / "t")],
        obj=state,
    )
    assert out.exit_code == 0, out.output
    (record_file,) = (tmp_path / "t" / "runs").glob("*.json")
    rec = json.loads(record_file.read_text())
    tuning = rec["model"]["tuning"]
    assert tuning["trials_complete"] == 3 and tuning["budget"] == {"trials": 3, "timeout_s": 600.0}
    assert rec["model"]["params"]["noise"] == tuning["params"]["noise"]
    bad = CliRunner().invoke(cli, ["tune", "--objective", "ndcg", "--model", "mf"], obj=CliState())
    assert bad.exit_code == 2 and "NAME@K" in bad.output
    bad = CliRunner().invoke(cli, ["tune", "--trials", "0", "--model", "mf", "--output", str(tmp_path / "x")], obj=CliState())
    assert bad.exit_code == 2 and "--trials must be at least 1" in bad.output and not (tmp_path / "x").exists()
    bad = CliRunner().invoke(cli, ["tune", "--storage", "redis://h/0", "--model", "mf", "--output", str(tmp_path / "x")], obj=CliState())
    assert bad.exit_code == 2 and "redis://h/0" in bad.output and not (tmp_path / "x").exists()


def test_model_param_sets_a_component_hyperparameter(tmp_path):
    out = CliRunner().invoke(
        cli,
        ["run", "--model", "composed", "--model-param", "fusion.heads=2", "--model-param", "fusion=attention",
         "--model-param", "epochs=1", "--model-param", "dim=16", "--dataset-param", "n_users=300", "--dataset-param", "n_items=60",
         "--seeds", "0", "-q", "--output", str(tmp_path / "c")],
        obj=CliState(),
    )
    assert out.exit_code == 0, out.output
    (record_file,) = (tmp_path / "c" / "runs").glob("*.json")
    rec = json.loads(record_file.read_text())
    assert rec["model"]["description"]["components"]["fusions"] == {"name": "attention", "params": {"heads": 2}}
    bad = CliRunner().invoke(cli, ["run", "--model", "popularity", "--model-param", "fusion.heads=2"], obj=CliState())
    assert bad.exit_code == 2 and "has a fusion" in bad.output
    bad = CliRunner().invoke(cli, ["run", "--model", "mf", "--model-param", "fusion.headz=2"], obj=CliState())
    assert bad.exit_code == 2 and "'headz'" in bad.output


def test_every_default_lies_inside_its_declared_range():
    registry = Registry(get_plugin_manager())
    checked = 0
    for kind in ("datasets", "item-encoders", "user-encoders", "fusions", "scorers", "recommenders"):
        for entry in registry.entries(kind):
            defaults = entry.spec.hyperparameters()
            for p in entry.spec.search_space:
                where = f"{kind} {entry.spec.name!r}: {p.name}"
                assert p.name in defaults, f"{where} is not a hyperparameter of the factory"
                value = defaults[p.name]
                if value is __import__("inspect").Parameter.empty:
                    continue
                checked += 1
                if isinstance(p, (IntParam, FloatParam)):
                    assert p.low <= value <= p.high, f"{where}: default {value} outside [{p.low}, {p.high}]"
                else:
                    assert value in p.choices, f"{where}: default {value!r} not among {p.choices}"
    assert checked > 40


def test_a_failing_configuration_fails_its_trial_and_tuning_goes_on():
    study = optuna.create_study(direction="maximize")

    def objective(trial):
        x = trial.suggest_float("x", 0.0, 1.0)
        if x > 0.5:
            raise ValueError("x too large for this toy")
        return -x

    optimize(study, objective, budget=Budget(trials=4), sampler_seed=0, heartbeat_s=5)
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert sum(t.state == TrialState.COMPLETE for t in study.trials) == 4
    assert failed and all("x too large" in t.user_attrs["crossbench:error"] for t in failed)

    def broken(trial):
        trial.suggest_float("x", 0.0, 1.0)
        raise ValueError("always")

    with pytest.raises(CrossbenchError, match="3 trials failed, the last with ValueError: always"):
        optimize(optuna.create_study(direction="maximize"), broken, budget=Budget(trials=2), heartbeat_s=5)


def test_enqueued_trials_are_run_not_waited_for():
    """A budget filled by enqueued (waiting) trials, such as the defaults of a one-trial study, is run."""
    study = optuna.create_study(direction="maximize")
    for x in (0.1, 0.2, 0.3):
        study.enqueue_trial({"x": x})
    optimize(study, lambda t: t.suggest_float("x", 0.0, 1.0), budget=Budget(trials=3), heartbeat_s=5)
    assert [t.params["x"] for t in study.trials] == [0.1, 0.2, 0.3]
    assert all(t.state == TrialState.COMPLETE for t in study.trials)


def test_a_one_trial_budget_is_the_defaults(tmp_path):
    registry = _registry()
    data, split = _split(registry, 0)
    outcome = tune_split(
        DEFAULT_EXPERIMENT, ModelRef("spy", {"noise": 0.0}), split.fit_view(), seed=0, split_fingerprint=split.fingerprint(),
        dataset_fingerprint=data.fingerprint(), registry=registry, device=torch.device("cpu"),
        options=RunOptions(output_dir=tmp_path, progress=False), settings=TuningSettings(trials=1), plots=False,
    )
    assert outcome is None  # nothing left to tune once noise is given
    outcome = tune_split(
        DEFAULT_EXPERIMENT, ModelRef("spy"), split.fit_view(), seed=0, split_fingerprint=split.fingerprint(),
        dataset_fingerprint=data.fingerprint(), registry=registry, device=torch.device("cpu"),
        options=RunOptions(output_dir=tmp_path, progress=False), settings=TuningSettings(trials=1), plots=False,
    )
    assert outcome.params == {"noise": 0.0} and outcome.record["trials_complete"] == 1


def test_defaults_enqueued_by_two_workers_at_once_are_run_once():
    """Two workers opening a new study together may both enqueue the defaults; only the first copy runs."""
    from crossbench.tune.trials import DEFAULTS, SURPLUS

    study = optuna.create_study(direction="maximize")
    for _ in range(2):
        study.enqueue_trial({"x": 0.25}, user_attrs={DEFAULTS: True}, skip_if_exists=False)
    optimize(study, lambda t: t.suggest_float("x", 0.0, 1.0), budget=Budget(trials=3), sampler_seed=0, heartbeat_s=5)
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 3
    assert len({t.params["x"] for t in complete}) == 3
    assert [t.params["x"] for t in complete if t.user_attrs.get(DEFAULTS)] == [0.25]
    (copy,) = [t for t in study.trials if t.state == TrialState.FAIL]
    assert copy.user_attrs.get(SURPLUS) and copy.user_attrs.get(DEFAULTS) and copy.number == 1
