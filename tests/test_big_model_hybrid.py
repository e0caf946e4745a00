"""lm-attention's hybrid part: an EASE item-item term added to the standardised neural scores."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from crossbench.data.protocols import Split
from crossbench.errors import CrossbenchError
from crossbench.plugin.interfaces import RunEnv
from crossbench.plugin.manager import get_plugin_manager
from crossbench.plugin.registry import Registry
from crossbench.train.pretrain import PretrainedRecommender
from crossbench_protocols import ColdStart
from crossbench_synthetic import SyntheticDataset
from crossbench_zoo.hybrid import LmAttention, standardised
from crossbench_zoo.neighbours import EASE

REGISTRY = Registry(get_plugin_manager())
SMALL = {"item_text": False, "dim": 16, "epochs": 1, "batch_size": 32, "history_length": 8}


@pytest.fixture(scope="module")
def split() -> Split:
    data = SyntheticDataset(n_users=120, n_items=30, seed=0).load()
    return ColdStart(target="movies", test_fraction=0.5, valid_fraction=0.2, seed=0).split(data)


def test_standardised_rows_by_hand() -> None:
    s = standardised(torch.tensor([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0], [0.0, 0.0, 4.0]]))
    r = math.sqrt(1.5)  # (1, 2, 3): mean 2, standard deviation sqrt(2/3)
    assert torch.allclose(s, torch.tensor([[-r, 0.0, r], [0.0, 0.0, 0.0], [-1 / math.sqrt(2), -1 / math.sqrt(2), math.sqrt(2)]]))


def test_the_scores_are_the_standardised_sum(split: Split, tmp_path: Path) -> None:
    env = RunEnv(registry=REGISTRY, seed=0, progress=False, cache_dir=tmp_path)
    model = REGISTRY.get("recommenders", "lm-attention").factory(**SMALL, item_item_weight=0.7, item_item_l2=50.0)
    assert isinstance(model, LmAttention)
    model.fit(split.fit_view(), env=env)
    ease = EASE(l2=50.0, domains="all")
    ease.fit(split.fit_view(), env=env)
    users = torch.as_tensor(split.test.users[:20])
    neural = PretrainedRecommender.score(model, users)
    expected = standardised(neural) + 0.7 * standardised(ease.score(users))
    assert torch.allclose(model.score(users), expected, atol=1e-5)
    buffer = torch.empty(20, split.train.domain("movies").n_items)
    assert model.score(users, out=buffer) is buffer and torch.allclose(buffer, expected, atol=1e-5)
    assert model.describe()["hybrid"]["weight"] == 0.7


def test_the_term_is_off_by_default_and_on_when_weighted() -> None:
    model = REGISTRY.get("recommenders", "lm-attention").factory()  # the published rows' model
    assert isinstance(model, LmAttention) and "hybrid" not in model.describe()
    weighted = REGISTRY.get("recommenders", "lm-attention").factory(item_item_weight=1.0)
    assert weighted.describe()["hybrid"]["weight"] == 1.0


def test_without_the_weight_there_is_no_item_item_term(split: Split, tmp_path: Path) -> None:
    model = REGISTRY.get("recommenders", "lm-attention").factory(**SMALL, item_item_weight=0.0)
    model.fit(split.fit_view(), env=RunEnv(registry=REGISTRY, seed=0, progress=False, cache_dir=tmp_path))
    assert model.item_item is None and "hybrid" not in model.describe()


@pytest.mark.parametrize(("params", "message"), [
    ({"item_item_weight": -0.5}, "item_item_weight must be a finite number >= 0"),
    ({"item_item_weight": 1.0, "item_item_l2": 0.0}, "item_item_l2 must be positive"),
])
def test_bad_hybrid_settings_are_refused(params: dict[str, float], message: str) -> None:
    with pytest.raises(CrossbenchError, match=message):
        REGISTRY.get("recommenders", "lm-attention").factory(**params)


def test_a_catalogue_too_large_for_the_item_item_term_is_refused_with_the_way_out(
    split: Split, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import crossbench_zoo.neighbours

    monkeypatch.setattr(crossbench_zoo.neighbours, "MAX_COLUMNS", 50)  # the synthetic split has 2 x 30 items
    model = REGISTRY.get("recommenders", "lm-attention").factory(**SMALL, item_item_weight=1.0)
    with pytest.raises(CrossbenchError, match=r"over all 60 items of every domain, above its limit of 50; pass item_item_weight=0"):
        model.fit(split.fit_view(), env=RunEnv(registry=REGISTRY, seed=0, progress=False, cache_dir=tmp_path))
