"""The new-items protocol on hand-made data: no interaction with a new item reaches training, the
split is fixed by its seed, and a model that cannot score new items is run and marked."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from crossbench.cli.app import cli
from crossbench.cli.common import CliState
from crossbench.data.audit import LeakageError, audit_split
from crossbench.data.model import CrossDomainData
from crossbench.data.protocols import GroundTruth, Split, exclude_for_test, exclude_for_validation
from crossbench.errors import CrossbenchError
from crossbench.plugin.build import make_recommender
from crossbench.plugin.interfaces import Recommender, RunEnv
from crossbench.plugin.registry import Registry
from crossbench_basic.models import Popularity
from crossbench_protocols import NewItems
from crossbench_synthetic import synthetic
from crossbench_zoo.text import TextItemEncoder


def tiny() -> CrossDomainData:
    """10 users in books and movies; user u took movies m0..m(u mod 10) and m9; user x takes movies only."""
    rows = []
    for u in range(10):
        rows += [("books", f"u{u}", "b1", 1), ("books", f"u{u}", f"b{2 + u % 3}", 2)]
        rows += [("movies", f"u{u}", f"m{i}", 3 + i) for i in range(u + 1)]
        if u < 9:
            rows.append(("movies", f"u{u}", "m9", 20))
    rows += [("movies", "x", "m0", 5), ("movies", "x", "m5", 6)]
    return CrossDomainData.from_frames("tiny", pd.DataFrame(rows, columns=["domain", "user", "item", "timestamp"]))


def _pairs(frame: pd.DataFrame) -> set[tuple[int, int]]:
    return set(zip(frame["user"].tolist(), frame["item"].tolist()))


def _truth_pairs(truth: GroundTruth) -> set[tuple[int, int]]:
    return {(int(u), int(i)) for j, u in enumerate(truth.users) for i in truth.items_of(j)}


def test_no_interaction_with_a_new_item_reaches_training() -> None:
    data = tiny()
    split = NewItems(target="movies", item_fraction=0.2, valid_item_fraction=0.1, valid_fraction=0.2, seed=0).split(data)
    movies = data.domain("movies").interactions
    held = set(split.held_items.tolist())
    test_items, valid_items = set(split.test_candidates.tolist()), set(split.valid_candidates.tolist())
    # 10 movies taken: round(0.2 * 10) = 2 test new items, round(0.1 * 10) = 1 validation new item
    assert len(test_items) == 2 and len(valid_items) == 1 and held == test_items | valid_items
    train = split.train.domain("movies").interactions
    assert not set(train["item"].tolist()) & held
    # every interaction with an old item, of every user, stays in training; books untouched
    old = movies[~movies["item"].isin(held)]
    assert _pairs(train) == _pairs(old) and len(train) == len(old)
    assert split.train.domain("books").n_interactions == data.domain("books").n_interactions
    # 2 of the 10 shared users validate, the other 8 are test users; x (movies only) is neither
    x = int(np.flatnonzero(data.user_ids == "x")[0])
    assert x not in split.test.users and x not in split.valid.users
    test_users, valid_users = set(split.test.users.tolist()), set(split.valid.users.tolist())
    assert not test_users & valid_users
    # the ground truth: exactly the users' interactions with their side's new items
    every = _pairs(movies)
    expected_test = {(u, i) for u, i in every if i in test_items and u != x and u not in _valid_side(split, data, x)}
    assert _truth_pairs(split.test) == expected_test
    assert _truth_pairs(split.valid) <= {(u, i) for u, i in every if i in valid_items}
    report = audit_split(split)
    assert "new-items-held-out" in report.checks


def _valid_side(split: Split, data: CrossDomainData, x: int) -> set[int]:
    """The validation users as the protocol drew them: 2 of the 10 shared users (seeded)."""
    rng = np.random.default_rng(0)
    rng.permutation(np.unique(data.domain("movies").interactions["item"].to_numpy()))
    order = rng.permutation(np.array([u for u in range(data.n_users) if u != x]))
    return set(order[:2].tolist())


def test_the_audit_catches_a_new_item_in_training_and_an_old_item_in_the_truth() -> None:
    data = tiny()
    split = NewItems(target="movies", item_fraction=0.2, valid_item_fraction=0.1, valid_fraction=0.2, seed=0).split(data)
    target = split.train.domain("movies")
    leak = pd.DataFrame({"user": [int(split.test.users[0])], "item": [int(split.held_items[0])], "timestamp": [1]})
    domains = dict(split.train.domains)
    domains["movies"] = dataclasses.replace(target, interactions=pd.concat([target.interactions, leak], ignore_index=True))
    with pytest.raises(LeakageError, match=r"\[new-items-held-out\].*training interactions involve held-out new items: 1 pair"):
        audit_split(dataclasses.replace(split, train=split.train.with_domains(domains)))
    u = int(split.test.users[0])
    taken = target.interactions.loc[target.interactions["user"] == u, "item"].to_numpy()
    old_item = int(np.setdiff1d(np.arange(target.n_items), np.union1d(split.held_items, taken))[0])  # not new, not u's
    wrong = GroundTruth.from_pairs(np.array([u]), np.array([old_item]))
    with pytest.raises(LeakageError, match=r"\[new-items-held-out\].*test ground truth holds items that are not new"):
        audit_split(dataclasses.replace(split, test=wrong))
    shared = GroundTruth.from_pairs(split.valid.users[:1], split.test.items[:1])
    with pytest.raises(LeakageError, match=r"new-items-held-out"):
        audit_split(dataclasses.replace(split, valid=shared))


def test_the_split_is_fixed_by_its_seed() -> None:
    data = tiny()
    a, b = (NewItems(target="movies", valid_item_fraction=0.1, valid_fraction=0.5, seed=3).split(data) for _ in range(2))
    assert a.fingerprint() == b.fingerprint()
    assert np.array_equal(a.held_items, b.held_items) and np.array_equal(a.test.users, b.test.users)
    others = [NewItems(target="movies", valid_item_fraction=0.1, valid_fraction=0.5, seed=s).split(data) for s in range(4, 8)]
    assert any(not np.array_equal(a.held_items, o.held_items) for o in others)
    assert len({o.fingerprint() for o in others} | {a.fingerprint()}) == 5


def test_each_side_ranks_its_own_new_items_only() -> None:
    data = tiny()
    split = NewItems(target="movies", item_fraction=0.2, valid_item_fraction=0.1, valid_fraction=0.2, seed=0).split(data)
    n = data.domain("movies").n_items
    test_ex, valid_ex = exclude_for_test(split), exclude_for_validation(split.fit_view())
    for truth, ex, candidates in ((split.test, test_ex, split.test_candidates), (split.valid, valid_ex, split.valid_candidates)):
        for u in truth.users:
            j = int(np.searchsorted(ex.users, u))
            assert sorted(set(range(n)) - set(ex.items_of(j).tolist())) == sorted(candidates.tolist())
    everything = NewItems(target="movies", item_fraction=0.2, valid_item_fraction=0.1, valid_fraction=0.2, candidates="all", seed=0).split(data)
    assert everything.test_candidates is None and everything.valid_candidates is None
    assert np.array_equal(exclude_for_test(everything).items, GroundTruth.from_pairs(
        everything.train.domain("movies").interactions["user"].to_numpy(), everything.train.domain("movies").interactions["item"].to_numpy()).items)


@pytest.mark.parametrize("params", [
    {"item_fraction": 0.0}, {"item_fraction": 0.9, "valid_item_fraction": 0.1}, {"valid_fraction": 1.0}, {"candidates": "old"},
])
def test_bad_settings_are_refused_in_one_line(params: dict[str, object]) -> None:
    with pytest.raises(CrossbenchError, match=r"^new-items: "):
        NewItems(target="movies", **params)  # type: ignore[arg-type]


def test_models_declare_whether_they_score_new_items() -> None:
    assert Recommender.cold_items(Popularity()) is False
    encoder = TextItemEncoder(text_vectors=torch.ones(3, 4), dim=2, n_experts=1, dropout=0.0, with_id=True)
    assert encoder.cold_items() is True


def test_a_model_that_cannot_score_new_items_is_run_and_marked(tmp_path: Path) -> None:
    exp = tmp_path / "exp.toml"
    exp.write_text(
        'name = "new"\nseeds = [0]\nks = [10]\nmetrics = ["ndcg"]\n'
        '[dataset]\nname = "synthetic"\nn_users = 300\nn_items = 80\n'
        '[protocol]\nname = "new-items"\ntarget = "movies"\n'
        '[[models]]\nname = "popularity"\n'
    )
    res = tmp_path / "res"
    out = CliRunner().invoke(cli, ["run", str(exp), "-q", "--threads", "1", "--output", str(res)], obj=CliState())
    assert out.exit_code == 0, out.output
    rec = json.loads(next((res / "runs").glob("*.json")).read_text())
    assert rec["model"]["cold_items"] is False and rec["protocol"]["held_out_items"] > 0
    assert "new-items-held-out" in rec["protocol"]["audit"]["checks"]
    # every new item has no training interaction: popularity ties all candidates, and a tie never favours the
    # relevant items: a user with r relevant items among C candidates has them at ranks C-r .. C-1 (0-based)
    data = synthetic(n_users=300, n_items=80).load()
    split = NewItems(target="movies", seed=0).split(data)
    n = len(split.test_candidates)
    expected = []
    for j in range(split.test.n_users):
        r = len(split.test.items_of(j))
        dcg = sum(1 / np.log2(rank + 2) for rank in range(n - r, n) if rank < 10)
        expected.append(dcg / sum(1 / np.log2(rank + 2) for rank in range(min(r, 10))))
    assert rec["protocol"]["n_test_users"] == split.test.n_users
    assert rec["evaluation"]["metrics"]["ndcg@10"] == pytest.approx(float(np.mean(expected)), abs=1e-12)
    board = (res / "leaderboard.md").read_text()
    header = next(line for line in board.splitlines() if line.startswith("| model"))
    row = next(line for line in board.splitlines() if line.startswith("| popularity"))
    cells = dict(zip([c.strip() for c in header.split("|")[1:-1]], [c.strip() for c in row.split("|")[1:-1]]))
    assert cells["new items"] == "cannot score new items"
    assert "ranked among those new items only" in board
    check = CliRunner().invoke(cli, ["verify", str(res)], obj=CliState())
    assert check.exit_code == 0, check.output


@pytest.mark.slow  # loads transformers and fits two models: about 20 s on a shared machine
def test_a_text_composition_scores_new_items_and_an_id_one_does_not(tmp_path: Path, registry: Registry) -> None:
    pytest.importorskip("transformers")
    from crossbench_zoo.testing import make_tiny_bert

    data = synthetic(n_users=80, n_items=30, seed=2).load()
    split = NewItems(target="movies", seed=0).split(data)
    bert = make_tiny_bert(tmp_path / "bert", data.domain("movies").item_texts(), hidden=16)
    env = RunEnv(registry=registry, progress=False, cache_dir=tmp_path / "cache")
    lm = make_recommender(registry, "lm-attention", {"model_path": str(bert), "epochs": 1, "dim": 8}, where="lm")
    ids = make_recommender(registry, "lm-attention", {"item_text": False, "epochs": 1, "dim": 8}, where="ids")
    torch.manual_seed(0)
    lm.fit(split.fit_view(), env=env)
    ids.fit(split.fit_view(), env=env)
    assert lm.cold_items() is True and ids.cold_items() is False
    # the text model tells the new items apart: their scores differ (their text does)
    scores = lm.score(torch.as_tensor(split.test.users[:1]))[0, torch.as_tensor(split.test_candidates)]
    assert len(torch.unique(scores)) == len(split.test_candidates)
