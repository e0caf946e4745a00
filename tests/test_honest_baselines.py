"""Baselines say what they read: the popularity fallback of target-only item-item models, the
declarations in run records, and the ``sources`` column and cold-user notes of leaderboards.

Expected scores are computed here with numpy from the hand-made interaction matrix,
independently of the models' code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from crossbench.cli import CliState, cli
from crossbench.data.model import CrossDomainData
from crossbench.data.protocols import GroundTruth, Split
from crossbench.errors import CrossbenchError
from crossbench.plugin.interfaces import FitReport, Recommender, RunEnv
from crossbench.plugin.manager import get_plugin_manager
from crossbench.plugin.registry import Registry
from crossbench.report.leaderboard import leaderboard_table, render_markdown
from crossbench.run.runner import declared_behaviour

REGISTRY = Registry(get_plugin_manager())

# 6 users; u5 has books only (cold in the target). Target counts: m0 3, m1 2, m2 4, m3 1.
SOURCE = [(0, 0), (1, 1), (2, 0), (3, 2), (4, 1), (5, 0), (5, 2)]
TARGET = [(0, 0), (0, 2), (1, 0), (1, 1), (2, 2), (2, 3), (3, 0), (3, 2), (4, 1), (4, 2)]
N_TARGET = 4
COLD, WARM = [5], [0, 1, 2, 3, 4]
POPULARITY_ORDER = [2, 0, 1, 3]


def hand_split() -> Split:
    rows = [("books", f"u{u}", f"b{i}", 0) for u, i in SOURCE] + [("movies", f"u{u}", f"m{i}", 0) for u, i in TARGET]
    frame = pd.DataFrame(rows, columns=["domain", "user", "item", "timestamp"])
    data = CrossDomainData.from_frames("hand", frame, domain_order=["books", "movies"])
    empty = GroundTruth.from_pairs(np.zeros(0, np.int64), np.zeros(0, np.int64))
    return Split(protocol="hand", target="movies", train=data, valid=empty, test=empty)


def target_matrix() -> np.ndarray:
    x = np.zeros((6, N_TARGET))
    for u, i in TARGET:
        x[u, i] = 1.0
    return x


def ease_scores(x: np.ndarray, l2: float) -> np.ndarray:
    p = np.linalg.inv(x.T @ x + l2 * np.eye(x.shape[1]))
    b = -p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    return x @ b


def itemknn_scores(x: np.ndarray, *, alpha: float, shrink: float, k: int) -> np.ndarray:
    g = x.T @ x
    c = np.diag(g)
    sim = g / (c[:, None] ** alpha * c[None, :] ** (1 - alpha) + shrink + 1e-12)
    np.fill_diagonal(sim, 0.0)
    kept = np.zeros_like(sim)
    for j in range(sim.shape[1]):  # each scored item keeps its k most similar history items
        top = np.argsort(-sim[:, j], kind="stable")[:k]
        kept[top, j] = sim[top, j]
    return x @ kept


def test_the_hand_split_is_what_the_test_assumes() -> None:
    split = hand_split()
    counts = np.bincount(split.train.domain("movies").interactions["item"].to_numpy(), minlength=N_TARGET)
    assert counts.tolist() == [3, 2, 4, 1]
    assert list(np.argsort(-counts, kind="stable")) == POPULARITY_ORDER
    target_users = set(split.train.domain("movies").interactions["user"].tolist())
    assert target_users == set(WARM) and split.train.n_users == 6


MODELS = [
    ("ease", {"l2": 0.5, "domains": "target"}, lambda x: ease_scores(x, 0.5)),
    ("itemknn", {"k": 2, "shrink": 1.0, "alpha": 0.6, "domains": "target"},
     lambda x: itemknn_scores(x, alpha=0.6, shrink=1.0, k=2)),
]


@pytest.mark.parametrize("name, params, expected", MODELS, ids=[m[0] for m in MODELS])
def test_target_only_cold_user_gets_the_popularity_order(name: str, params: dict[str, Any], expected: Any) -> None:
    model = REGISTRY.get("recommenders", name).factory(**params)
    model.fit(hand_split(), env=RunEnv(registry=REGISTRY))
    scores = model.score(torch.arange(6)).numpy()
    # without the fallback the cold user's row is all zero: every item tied
    assert not expected(target_matrix())[COLD].any()
    cold = scores[COLD[0]]
    assert list(np.argsort(-cold, kind="stable")) == POPULARITY_ORDER
    assert len(set(cold.tolist())) == N_TARGET  # no ties left between items of different popularity
    assert 0.0 < cold.max() <= 1e-6  # a tiny prior, not a score
    np.testing.assert_allclose(cold, np.array([3, 2, 4, 1]) / 4 * 1e-6, rtol=1e-6)
    # the users with target history keep exactly the item-item scores
    np.testing.assert_allclose(scores[WARM], expected(target_matrix())[WARM], rtol=1e-5, atol=1e-7)
    assert model.reads_source_domains() is False
    assert "popularity" in str(model.cold_users())


@pytest.mark.parametrize("name, params, expected", MODELS, ids=[m[0] for m in MODELS])
def test_the_fallback_fills_the_evaluators_buffer_too(name: str, params: dict[str, Any], expected: Any) -> None:
    model = REGISTRY.get("recommenders", name).factory(**params)
    model.fit(hand_split(), env=RunEnv(registry=REGISTRY))
    users = torch.tensor([5, 0])
    buffer = torch.full((2, N_TARGET), float("nan"))
    into = model.score(users, out=buffer)
    assert torch.equal(into, model.score(users))
    assert list(np.argsort(-into[0].numpy(), kind="stable")) == POPULARITY_ORDER


@pytest.mark.parametrize("name, params", [("ease", {"l2": 0.5}), ("itemknn", {})])
def test_all_domains_serve_the_cold_user_from_sources(name: str, params: dict[str, Any]) -> None:
    model = REGISTRY.get("recommenders", name).factory(domains="all", **params)
    model.fit(hand_split(), env=RunEnv(registry=REGISTRY))
    cold = model.score(torch.tensor(COLD)).numpy()[0]
    assert np.abs(cold).max() > 1e-3  # item-item scores from the books, not the tiny prior
    assert model.reads_source_domains() is True
    assert model.cold_users() == "from source-domain history"


def test_popularity_declares_itself() -> None:
    model = REGISTRY.get("recommenders", "popularity").factory()
    assert model.reads_source_domains() is False
    assert model.cold_users() == "popularity (same list for everyone)"


class _Undeclared(Recommender):
    def fit(self, split: Any, *, env: RunEnv) -> FitReport:
        return FitReport()

    def score(self, users: torch.Tensor, *, out: torch.Tensor | None = None) -> torch.Tensor:
        return torch.zeros(len(users), 1)


class _Wrong(_Undeclared):
    def reads_source_domains(self) -> Any:
        return "yes"


class _DuckTyped:  # a plugin model need not subclass Recommender
    def fit(self, split: Any, *, env: RunEnv) -> FitReport:
        return FitReport()


def test_declarations_are_checked() -> None:
    assert declared_behaviour(_Undeclared(), label="u") == {"reads_source_domains": None, "cold_users": None}
    assert declared_behaviour(_DuckTyped(), label="d") == {"reads_source_domains": None, "cold_users": None}
    with pytest.raises(CrossbenchError, match=r"model 'w': reads_source_domains\(\) returned 'yes'; return True, False or None"):
        declared_behaviour(_Wrong(), label="w")


# --------------------------------------------------------------------------- records and tables


def test_records_carry_the_declarations_and_the_board_shows_them(tmp_path: Path) -> None:
    exp = tmp_path / "exp.toml"
    exp.write_text(
        'name = "honest"\nseeds = [0]\nks = [10]\nmetrics = ["ndcg"]\n'
        '[dataset]\nname = "synthetic"\nn_users = 300\nn_items = 80\n'
        '[protocol]\nname = "cold-start"\ntarget = "movies"\n'
        '[[models]]\nname = "popularity"\n'
        '[[models]]\nname = "ease"\nlabel = "ease-target"\ndomains = "target"\n'
        '[[models]]\nname = "ease"\nlabel = "ease-all"\ndomains = "all"\n'
    )
    res = tmp_path / "res"
    out = CliRunner().invoke(cli, ["run", str(exp), "-q", "--threads", "1", "--output", str(res)], obj=CliState())
    assert out.exit_code == 0, out.output
    records = {}
    for f in (res / "runs").glob("*.json"):
        rec = json.loads(f.read_text())
        records[rec["model"]["label"]] = rec["model"]
    assert {k: (v["reads_source_domains"], v["cold_users"]) for k, v in records.items()} == {
        "popularity": (False, "popularity (same list for everyone)"),
        "ease-target": (False, "popularity fallback (target popularity order)"),
        "ease-all": (True, "from source-domain history"),
    }
    board = (res / "leaderboard.md").read_text()
    main = board.split("\n## Where each model wins and loses")[0]  # the breakdown tables follow the leaderboard's
    table = [[cell.strip() for cell in line.split("|")[1:-1]] for line in main.splitlines() if line.startswith("| ")]
    assert table[0][:3] == ["model", "sources", "seeds"]
    rows = {row[0]: row[1] for row in table[1:]}
    assert rows["ease-all"] == "yes" and rows["ease-target"] == "no" and rows["popularity"] == "no"
    assert "`sources`: whether scoring a user reads their history in domains other than the target" in board
    assert "- popularity: popularity (same list for everyone)" in board
    assert "- ease-target: popularity fallback (target popularity order)" in board
    assert "- ease-all" not in board  # served from source-domain history: no note
    check = CliRunner().invoke(cli, ["leaderboard", str(res), "--check", str(res / "leaderboard.md")], obj=CliState())
    assert check.exit_code == 0, check.output


def _record(label: str, **model: Any) -> dict[str, Any]:
    return {
        "model": {"label": label, **model},
        "seed": 0,
        "dataset": {"name": "toy", "fingerprint": "f" * 64},
        "protocol": {"name": "cold-start", "target": "movies", "split_fingerprint": "1" * 64, "n_test_users": 3, "params": {}},
        "evaluation": {"columns": ["ndcg@10"], "metrics": {"ndcg@10": 0.1 + len(label) / 100}, "lower_is_better": []},
        "timings": {"fit_s": 1.0},
    }


def test_older_records_keep_their_table_and_mix_as_undeclared() -> None:
    old = [_record("a"), _record("bb")]
    header, _ = leaderboard_table(old)
    assert "sources" not in header
    assert "`sources`" not in render_markdown(old)
    mixed = [_record("a"), _record("bb", reads_source_domains=True, cold_users="from source-domain history"),
             _record("ccc", reads_source_domains=None, cold_users=None)]
    header, rows = leaderboard_table(mixed)
    assert header[:3] == ["model", "sources", "seeds"]
    assert {r[0]: r[1] for r in rows} == {"a": "?", "bb": "yes", "ccc": "?"}
    text = render_markdown(mixed)
    assert "- ccc: not declared\n- a: not declared" in text and "- bb" not in text
