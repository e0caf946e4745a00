"""Optuna tuning: equal budgets, validation users only, tuned values reach the records."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import torch
from click.testing import CliRunner

from crossbench import hookimpl
from crossbench.cli import CliState, cli
from crossbench.data.protocols import make_protocol
from crossbench.experiment import DEFAULT_EXPERIMENT, DatasetRef, ModelRef, RunOptions
from crossbench.interfaces import ComponentSpec, FitReport, FloatParam, Recommender
from crossbench.plugins import get_plugin_manager
from crossbench.registry import Registry
from crossbench.tuning import tune_experiment


class Spy(Recommender):
    """Scores items by a noisy popularity; remembers which users it was asked to score."""

    scored: list[np.ndarray] = []
    fitted: list[float] = []

    def __init__(self, *, noise: float = 0.0) -> None:
        self.noise = noise

    def fit(self, split, *, env):
        Spy.fitted.append(self.noise)
        dom = split.train.domain(split.target)
        counts = np.bincount(dom.interactions["item"], minlength=dom.n_items).astype(np.float32)
        rng = np.random.default_rng(0)
        self.scores = torch.as_tensor(counts + self.noise * rng.standard_normal(dom.n_items).astype(np.float32) * counts.std())
        return FitReport()

    def score(self, users):
        Spy.scored.append(users.cpu().numpy().copy())
        return self.scores.unsqueeze(0).expand(len(users), -1)


class SpyPlugin:
    @hookimpl
    def crossbench_recommenders(self):
        return [ComponentSpec("spy", lambda *, noise=0.0: Spy(noise=noise), "spy", (FloatParam("noise", 0.0, 3.0),))]


def test_tuning_sees_only_validation_users(tmp_path):
    registry = Registry(get_plugin_manager([SpyPlugin()]))
    exp = replace(
        DEFAULT_EXPERIMENT,
        dataset=DatasetRef("synthetic", {"n_users": 600, "n_items": 150}),
        models=(ModelRef("spy"), ModelRef("popularity")),
        seeds=(0,),
    )
    Spy.scored, Spy.fitted = [], []
    tuned, results = tune_experiment(exp, registry=registry, options=RunOptions(output_dir=tmp_path, progress=False), trials=6)
    assert len(Spy.fitted) == 6 and set(results) == {"spy"}  # popularity has no search space
    data = registry.get("datasets", "synthetic").factory(n_users=600, n_items=150).load()
    split = make_protocol("cold-start", target="movies", seed=0, test_fraction=0.5, valid_fraction=0.1).split(data)
    seen = np.unique(np.concatenate(Spy.scored))
    assert np.array_equal(seen, split.valid.users)
    assert not np.intersect1d(seen, split.test.users).size
    # the noise-free end of the range wins: the best value is the smallest noise tried
    assert results["spy"].params["noise"] == min(Spy.fitted)
    assert dict(tuned.models[0].params) == {"noise": results["spy"].params["noise"]}


def test_tune_command_records_tuning(tmp_path):
    state = CliState(extra_plugins=[SpyPlugin()])
    out = CliRunner().invoke(
        cli,
        ["tune", "--model", "spy", "--dataset-param", "n_users=500", "--dataset-param", "n_items=120",
         "--seeds", "0", "--trials", "3", "-q", "--output", str(tmp_path / "t")],
        obj=state,
    )
    assert out.exit_code == 0, out.output
    (record_file,) = (tmp_path / "t" / "runs").glob("*.json")
    rec = json.loads(record_file.read_text())
    assert rec["model"]["tuning"]["trials"] == 3
    assert rec["model"]["tuning"]["selected_on"] == "validation users"
    assert rec["model"]["params"]["noise"] == rec["model"]["tuning"]["params"]["noise"]
    bad = CliRunner().invoke(cli, ["tune", "--objective", "ndcg", "--model", "mf"], obj=CliState())
    assert bad.exit_code == 2 and "NAME@K" in bad.output
