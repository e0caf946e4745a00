"""The plugin API says what it does: `check` is part of every recommender, untuned kinds take no
search space, and item-level fusion is a type of its own."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from crossbench import hookimpl
from crossbench.errors import CrossbenchError
from crossbench.experiment import DatasetRef, Experiment, ModelRef, ProtocolRef
from crossbench.experiment.checks import validate
from crossbench.plugin.interfaces import FitReport, Recommender, RunEnv
from crossbench.plugin.manager import get_plugin_manager
from crossbench.plugin.modules import Fusion, ItemLevelFusion
from crossbench.plugin.registry import Registry
from crossbench.plugin.specs import ComponentSpec, IntParam


class _Refusing(Recommender):
    def __init__(self, *, limit: int = 3) -> None:
        self.limit = limit

    def check(self, env: RunEnv, *, where: str) -> None:
        if self.limit > 2:
            raise CrossbenchError(f"{where}: limit {self.limit} is above 2")

    def fit(self, split: Any, *, env: RunEnv) -> FitReport:
        return FitReport()

    def score(self, users: torch.Tensor, *, out: torch.Tensor | None = None) -> torch.Tensor:
        return torch.zeros(len(users), 1)


class _Plugin:
    @hookimpl
    def crossbench_recommenders(self) -> list[ComponentSpec]:
        return [ComponentSpec("refusing", _Refusing, "refuses limit > 2")]


def _experiment(params: dict[str, Any]) -> Experiment:
    return Experiment(dataset=DatasetRef("synthetic"), protocol=ProtocolRef("cold-start"),
                      models=(ModelRef("refusing", params),), metrics=("ndcg",), ks=(10,))


def test_the_base_check_accepts_and_validation_calls_an_override() -> None:
    registry = Registry(get_plugin_manager([_Plugin()]))
    assert Recommender.check(_Refusing(limit=1), RunEnv(registry=registry), where="m") is None
    validate(_experiment({"limit": 2}), registry)
    with pytest.raises(CrossbenchError, match="model 'refusing': limit 3 is above 2"):
        validate(_experiment({}), registry)


class _SpacedDataset:
    @hookimpl
    def crossbench_datasets(self) -> list[ComponentSpec]:
        return [ComponentSpec("spaced", lambda *, n: None, "a dataset with a search space", (IntParam("n", 1, 9),))]


def test_a_dataset_with_a_search_space_is_refused() -> None:
    registry = Registry(get_plugin_manager([_SpacedDataset()]))
    assert any("dataset 'spaced': has a search_space, but datasets are not tuned; drop it" in p for p in registry.problems())
    assert "spaced" not in registry.names("datasets")


class _Attend(ItemLevelFusion):
    def forward(self, vectors: Any, present: Any, target: str, items: Any = None, item_masks: Any = None) -> torch.Tensor:
        # the mean of the readable target items: 2 items of vectors [1, 1] and [3, 3], one masked out
        keep = item_masks[target].unsqueeze(-1).to(items[target].dtype)
        return (items[target] * keep).sum(1) / keep.sum(1).clamp(min=1.0)


def test_item_level_fusion_is_its_own_type() -> None:
    fusion = _Attend()
    assert isinstance(fusion, Fusion) and fusion.item_level and not Fusion.item_level
    items = {"t": torch.tensor([[[1.0, 1.0], [3.0, 3.0], [9.0, 9.0]]])}
    masks = {"t": torch.tensor([[True, True, False]])}
    out = fusion({"t": torch.zeros(1, 2)}, {"t": torch.tensor([True])}, "t", items=items, item_masks=masks)
    assert out.tolist() == [[2.0, 2.0]]


def test_a_run_builds_each_model_once_per_run(tmp_path: Any) -> None:
    """Validation's instance is fitted in the first run: two seeds build the model twice, not three times."""
    from crossbench.experiment import RunOptions
    from crossbench.run.runner import run_experiment
    from crossbench_basic.models import Popularity

    built: list[Popularity] = []

    def counted() -> Popularity:
        built.append(Popularity())
        return built[-1]

    class _Counting:
        @hookimpl
        def crossbench_recommenders(self) -> list[ComponentSpec]:
            return [ComponentSpec("counted", counted, "popularity, counting its constructions")]

    exp = Experiment(dataset=DatasetRef("synthetic", {"n_users": 300}), protocol=ProtocolRef("cold-start"),
                     models=(ModelRef("counted"),), metrics=("ndcg",), ks=(10,), seeds=(0, 1))
    registry = Registry(get_plugin_manager([_Counting()]))
    records, _ = run_experiment(exp, registry=registry, options=RunOptions(output_dir=tmp_path, progress=False, device="cpu"))
    assert len(records) == 2 and len(built) == 2


def test_preprocessing_keywords_are_declared_once_for_every_dataset() -> None:
    import inspect

    from crossbench.data.preprocess import PREPROCESSING_FIELDS, Preprocessing, preprocessing

    @preprocessing(Preprocessing(kcore=2))
    def shop(*, path: str, preprocessing: Preprocessing) -> tuple[str, Preprocessing]:
        return path, preprocessing

    params = inspect.signature(shop).parameters
    assert list(params) == ["path", *PREPROCESSING_FIELDS]
    assert params["kcore"].default == 2 and params["min_rating"].default is None
    assert shop(path="p") == ("p", Preprocessing(kcore=2))
    assert shop(path="p", min_rating="4", kcore="3", min_overlap=0) == ("p", Preprocessing(min_rating=4.0, kcore=3, min_overlap=0))
    assert shop(path="p", min_rating="none")[1].min_rating is None
    registry = Registry(get_plugin_manager())
    for name in registry.names("datasets"):  # every built-in dataset that preprocesses offers the same keywords
        keys = set(registry.get("datasets", name).hyperparameters())
        assert set(PREPROCESSING_FIELDS) <= keys or not keys & set(PREPROCESSING_FIELDS), name
