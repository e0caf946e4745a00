"""Pretrain, then fine-tune (crossbench.train.pretrain): the cache is keyed by content, a cache hit
gives the same weights, pretrain_epochs=0 is the plain trainer, and pretraining reads the
protocol's training view only."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from crossbench.data.model import CrossDomainData
from crossbench.data.protocols import FitSplit, Split
from crossbench.errors import CrossbenchError
from crossbench.plugin.interfaces import RunEnv
from crossbench.plugin.manager import get_plugin_manager
from crossbench.plugin.registry import Registry
from crossbench.train import ComposedRecommender
from crossbench.train import pretrain as pt
from crossbench.train.pretrain import PretrainedRecommender, pretrain_key
from crossbench_protocols import ColdStart
from crossbench_synthetic import SyntheticDataset

REGISTRY = Registry(get_plugin_manager())
#: the cold-start seed that holds out u6 (test) and u7 (validation) in :func:`hand_made`
SEED_HOLDING_U6_U7 = 2
#: a small, fast lm-attention: ID item vectors (no language model), one Transformer layer, the
#: neural model alone (no item-item term: pretraining concerns the neural part only)
SMALL = {"item_item_weight": 0.0, "item_text": False, "dim": 16, "epochs": 2, "batch_size": 32, "history_length": 8}


@pytest.fixture(scope="module")
def split() -> Split:
    data = SyntheticDataset(n_users=120, n_items=30, seed=0).load()
    return ColdStart(target="movies", test_fraction=0.5, valid_fraction=0.2, seed=0).split(data)


def lm_attention(**params: object) -> PretrainedRecommender:
    model = REGISTRY.get("recommenders", "lm-attention").factory(**{**SMALL, **params})
    assert isinstance(model, PretrainedRecommender)
    return model


def weights_sha(model: ComposedRecommender) -> str:
    assert model.model is not None
    h = hashlib.sha256()
    for name, t in sorted(model.model.state_dict().items()):
        h.update(name.encode() + t.detach().cpu().numpy().tobytes())
    return h.hexdigest()


def env(cache: Path, seed: int = 0) -> RunEnv:
    return RunEnv(registry=REGISTRY, seed=seed, progress=False, cache_dir=cache)


def key_of(model: PretrainedRecommender, fit: FitSplit, cache: Path, seed: int = 0) -> str:
    built = model.build(fit, env(cache, seed))
    return pretrain_key(
        built, fit.train, built.domains_for(fit.target), components={k: r.to_dict() for k, r in model.refs.items()},
        config=model.config, settings=model.pretraining, seed=seed, device=torch.device("cpu"),
    )


def with_train(fit: FitSplit, domain: str, interactions: pd.DataFrame) -> FitSplit:
    d = fit.train.domain(domain)
    train = fit.train.with_domains({**fit.train.domains, domain: replace(d, interactions=interactions)})
    return replace(fit, train=train)


def test_the_key_changes_with_one_interaction_one_setting_or_the_seed(split: Split, tmp_path: Path) -> None:
    fit = split.fit_view()
    base = key_of(lm_attention(pretrain_epochs=1), fit, tmp_path)
    assert base == key_of(lm_attention(pretrain_epochs=1), fit, tmp_path)  # same inputs, same key
    inter = fit.train.domain("books").interactions.copy()
    moved = inter.copy()
    moved.loc[moved.index[0], "item"] = (int(moved["item"].iloc[0]) + 1) % fit.train.domain("books").n_items
    later = inter.copy()
    later.loc[later.index[0], "timestamp"] = int(later["timestamp"].iloc[0]) + 1
    keys = {
        "one item": key_of(lm_attention(pretrain_epochs=1), with_train(fit, "books", moved), tmp_path),
        "one time": key_of(lm_attention(pretrain_epochs=1), with_train(fit, "books", later), tmp_path),
        "one interaction fewer": key_of(lm_attention(pretrain_epochs=1), with_train(fit, "books", inter.iloc[1:]), tmp_path),
        "epochs": key_of(lm_attention(pretrain_epochs=2), fit, tmp_path),
        "lr": key_of(lm_attention(pretrain_epochs=1, lr=2e-3), fit, tmp_path),
        "dim": key_of(lm_attention(pretrain_epochs=1, dim=32), fit, tmp_path),
        "layers": key_of(lm_attention(pretrain_epochs=1, layers=2), fit, tmp_path),
        "seed": key_of(lm_attention(pretrain_epochs=1), fit, tmp_path, seed=1),
    }
    assert base not in keys.values() and len(set(keys.values())) == len(keys)
    # fine-tuning settings that pretraining does not read share the pretrained weights
    assert key_of(lm_attention(pretrain_epochs=1, target_history_dropout=0.3, epochs=7), fit, tmp_path) == base


def test_the_key_reads_the_item_text_embeddings(split: Split, tmp_path: Path) -> None:
    fit = split.fit_view()
    model = lm_attention(pretrain_epochs=1)
    built = model.build(fit, env(tmp_path))
    args = {"components": {k: r.to_dict() for k, r in model.refs.items()}, "config": model.config,
            "settings": model.pretraining, "seed": 0, "device": torch.device("cpu")}
    domains = built.domains_for(fit.target)
    built.register_buffer("text", torch.ones(3, 4), persistent=False)  # a frozen text table
    before = pretrain_key(built, fit.train, domains, **args)
    built.text[1, 2] = 0.5  # one item's text vector
    assert pretrain_key(built, fit.train, domains, **args) != before


def test_a_cache_hit_gives_identical_weights_and_fit(split: Split, tmp_path: Path) -> None:
    first = lm_attention(pretrain_epochs=2)
    r1 = first.fit(split.fit_view(), env=env(tmp_path))
    o1 = first.pretrain_outcome
    assert o1 is not None and not o1.cached and len(o1.losses) == 2 and o1.losses[1] < o1.losses[0]
    files = list((tmp_path / "pretrained").glob("*.pt"))
    assert [f.stem for f in files] == [o1.key]
    cached_state = torch.load(files[0], weights_only=True)["state"]

    second = lm_attention(pretrain_epochs=2)
    r2 = second.fit(split.fit_view(), env=env(tmp_path))
    o2 = second.pretrain_outcome
    assert o2 is not None and o2.cached and o2.key == o1.key and o2.losses == ()
    assert weights_sha(first) == weights_sha(second) and r1.history == r2.history
    # the record says what was pretrained, under which key, for how long
    described = second.describe()["pretraining"]
    assert described["key"] == o1.key and described["cached"] is True and described["seconds"] >= 0
    # fine-tuning moved the weights away from the pretrained ones
    assert second.model is not None
    assert any(not torch.equal(cached_state[k], v) for k, v in second.model.state_dict().items())


def test_pretraining_changes_the_start_of_fine_tuning(split: Split, tmp_path: Path) -> None:
    plain = lm_attention(epochs=1).fit(split.fit_view(), env=env(tmp_path))
    pre = lm_attention(epochs=1, pretrain_epochs=3).fit(split.fit_view(), env=env(tmp_path))
    assert plain.history != pre.history


def test_zero_pretrain_epochs_is_the_plain_trainer_bit_for_bit(split: Split, tmp_path: Path) -> None:
    off = lm_attention(pretrain_epochs=0)
    report = off.fit(split.fit_view(), env=env(tmp_path))
    refs = off.refs
    plain = ComposedRecommender(item_encoder=refs["item-encoders"], user_encoder=refs["user-encoders"], fusion=refs["fusions"],
                                scorer=refs["scorers"], config=off.config)
    plain_report = plain.fit(split.fit_view(), env=env(tmp_path))
    assert weights_sha(off) == weights_sha(plain) and report.history == plain_report.history
    assert "pretraining" not in off.describe() and not (tmp_path / "pretrained").exists()


def test_bad_pretrain_epochs_are_refused_in_one_line() -> None:
    for bad in (-1, 1.5):
        with pytest.raises(CrossbenchError, match="pretrain_epochs must be a whole number >= 0"):
            lm_attention(pretrain_epochs=bad)


def hand_made() -> CrossDomainData:
    """Eight users in books and movies; u6 and u7 are the only ones who took movie m3."""
    rows = [("books", u, f"b{(u + k) % 4}", 10 * k + u) for u in range(8) for k in range(3)]
    rows += [("movies", u, f"m{(u + k) % 3}", 100 + 10 * k + u) for u in range(6) for k in range(3)]
    rows += [("movies", u, m, 200 + t) for u in (6, 7) for t, m in enumerate(("m3", "m0", "m3"))]
    frame = pd.DataFrame(rows, columns=["domain", "user", "item", "timestamp"])
    frame["user"] = "u" + frame["user"].astype(str)
    return CrossDomainData.from_frames("hand", frame).validate()


def test_pretraining_never_sees_a_held_out_target_item(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = hand_made()
    split = ColdStart(target="movies", test_fraction=0.25, valid_fraction=0.25, seed=SEED_HOLDING_U6_U7).split(data)
    users = data.user_ids.tolist()
    m3 = int(np.flatnonzero(data.domain("movies").items["item_id"].to_numpy() == "m3")[0])
    held = {(int(u), int(i)) for gt in (split.valid, split.test) for j, u in enumerate(gt.users) for i in gt.items_of(j)}
    # the case is made so that both takers of m3 are held out: m3 is a held-out target item only
    assert {users.index("u6"), users.index("u7")} <= {u for u, _ in held} and (users.index("u6"), m3) in held
    seen: dict[str, set[tuple[int, int]]] = {"books": set(), "movies": set()}
    real = pt.next_item_loss

    def spy(model: object, domain: str, users: torch.Tensor, windows: torch.Tensor) -> tuple[torch.Tensor, int]:
        for u, row in zip(users.tolist(), windows.tolist()):
            seen[domain] |= {(u, i) for i in row if i >= 0}
        return real(model, domain, users, windows)  # type: ignore[arg-type]

    monkeypatch.setattr(pt, "next_item_loss", spy)
    lm_attention(pretrain_epochs=2, epochs=1).fit(split.fit_view(), env=env(tmp_path))
    train_movies = split.train.domain("movies").interactions
    assert seen["movies"] == set(zip(train_movies["user"].tolist(), train_movies["item"].tolist()))
    assert len(seen["movies"]) == 12  # u0, u1, u3, u4 kept: 3 distinct movies each
    assert not seen["movies"] & held and m3 not in {i for _, i in seen["movies"]}
    # cold-start hides the target domain only: every book interaction was read
    books = data.domain("books").interactions
    assert seen["books"] == set(zip(books["user"].tolist(), books["item"].tolist()))
