"""The test set is out of reach of fitting: every registered recommender fits on a split whose
test part raises on any access, and the runner hands models a view that has no test part."""

from __future__ import annotations

import dataclasses
from dataclasses import replace

import pytest
import torch

from crossbench import hookimpl
from crossbench.data.protocols import FitSplit
from crossbench.experiment import DatasetRef, ModelRef, RunOptions
from crossbench.plugin.build import make_protocol
from crossbench.plugin.interfaces import FitReport, Recommender, RunEnv
from crossbench.plugin.manager import get_plugin_manager
from crossbench.plugin.registry import Registry
from crossbench.plugin.specs import ComponentSpec
from crossbench.run.runner import run_experiment
from crossbench_basic import DEFAULT_EXPERIMENT
from crossbench_zoo.testing import make_tiny_bert


class SealedAccess(AssertionError):
    pass


class SealedTruth:
    """Stands in for the test ground truth; any attribute access, length or iteration raises."""

    def __getattribute__(self, name: str):
        raise SealedAccess(f"the test set was read during fit (attribute {name!r})")

    def __len__(self) -> int:
        raise SealedAccess("the test set was read during fit (len)")

    def __iter__(self):
        raise SealedAccess("the test set was read during fit (iteration)")


def _small_params(name: str, model_path: str) -> dict:
    """Short training for every trainer-based model; a tiny local text model for text encoders."""
    spec = REGISTRY.get("recommenders", name)
    hp = spec.hyperparameters()
    params = {k: v for k, v in {"epochs": 1, "dim": 16}.items() if k in hp}
    if "model_path" in hp:
        params["model_path"] = model_path
    if name == "composed":
        params["item_encoder"] = "id"
    return params


REGISTRY = Registry(get_plugin_manager())


@pytest.fixture(scope="module")
def sealed_split():
    data = REGISTRY.get("datasets", "synthetic").factory(n_users=300, n_items=60).load()
    split = make_protocol(REGISTRY, "cold-start", target="movies", seed=0, test_fraction=0.3, valid_fraction=0.2).split(data)
    return replace(split, test=SealedTruth())


@pytest.fixture(scope="module")
def tiny_text_model(sealed_split, tmp_path_factory):
    texts = [str(t) for d in sealed_split.train.domains.values() for t in d.items["title"]]
    return str(make_tiny_bert(tmp_path_factory.mktemp("bert"), texts))


@pytest.mark.parametrize("name", REGISTRY.names("recommenders"))
def test_every_recommender_fits_without_the_test_set(name, sealed_split, tiny_text_model, tmp_path_factory):
    model = REGISTRY.get("recommenders", name).factory(**_small_params(name, tiny_text_model))
    env = RunEnv(registry=REGISTRY, progress=False, cache_dir=tmp_path_factory.mktemp("cache"))
    report = model.fit(sealed_split, env=env)
    assert isinstance(report, FitReport)
    scores = model.score(torch.as_tensor(sealed_split.valid.users[:4]))
    assert scores.shape == (4, sealed_split.train.domain("movies").n_items)


class ViewSpy(Recommender):
    seen: list[object] = []

    def fit(self, split, *, env):
        ViewSpy.seen.append(split)
        self.n = split.train.domain(split.target).n_items
        return FitReport()

    def score(self, users, *, out=None):
        return torch.zeros(len(users), self.n)


class ViewSpyPlugin:
    @hookimpl
    def crossbench_recommenders(self):
        return [ComponentSpec("view-spy", ViewSpy, "records what fit receives")]


def test_runner_fits_on_a_view_without_test(tmp_path):
    registry = Registry(get_plugin_manager([ViewSpyPlugin()]))
    exp = replace(DEFAULT_EXPERIMENT, dataset=DatasetRef("synthetic", {"n_users": 300, "n_items": 60}),
                  models=(ModelRef("view-spy"),), seeds=(0,))
    ViewSpy.seen = []
    run_experiment(exp, registry=registry, options=RunOptions(output_dir=tmp_path / "out", progress=False))
    (view,) = ViewSpy.seen
    assert isinstance(view, FitSplit)
    assert not hasattr(view, "test")
    assert "test" not in {f.name for f in dataclasses.fields(view)}
