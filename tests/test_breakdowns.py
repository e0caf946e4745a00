"""Breakdowns by source-history length and by item popularity: bins and tiers on hand-made cases with
hand-computed means, the evaluator's per-tier values, and boards of records with and without them."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd
import torch

from crossbench.data.model import CrossDomainData
from crossbench.data.protocols import GroundTruth
from crossbench.evaluate import evaluate
from crossbench.evaluate.breakdowns import history_bins, popularity_tiers, record_breakdowns, source_history, split_tiers, tier_groups
from crossbench.evaluate.ranking import EvalResult
from crossbench.evaluate.validation import VALIDATION_SPEC
from crossbench.report.breakdowns import breakdown_data, render_breakdowns
from crossbench.report.exports import artefacts


def test_history_bins_are_fixed() -> None:
    bins = history_bins(np.array([0, 1, 5, 6, 20, 21, 50, 51, 300]))
    assert {k: np.flatnonzero(v).tolist() for k, v in bins.items()} == {
        "0": [0], "1-5": [1, 2], "6-20": [3, 4], "21-50": [5, 6], "51+": [7, 8],
    }


def test_popularity_tiers_by_share_of_training_interactions() -> None:
    # 20 interactions; most popular first: item 0 (10, none before it), 2 (5; 10 before), 3 (3; 15 before),
    # 4 (1; 18 before), 5 (1; 19 before: equal counts, lower index first), 1 (0; 20 before).
    # head: fewer than 4 (20%) before it; tail: at least 16 (80%) before it.
    tiers = popularity_tiers(np.array([10, 0, 5, 3, 1, 1]))
    assert {k: np.flatnonzero(v).tolist() for k, v in tiers.items()} == {"head": [0], "torso": [2, 3], "tail": [1, 4, 5]}


def _data() -> CrossDomainData:
    rows = [("movies", f"u{u}", "m0", 1) for u in range(4)]
    rows += [("books", "u1", f"b{i}", 1) for i in range(3)] + [("music", "u1", "s0", 1)]  # u1: 4 source interactions
    rows += [("books", "u2", f"b{i}", 1) for i in range(2)]  # u2: 2
    rows += [("books", "u3", f"b{i % 5}", i) for i in range(60)]  # u3: 60 (repeats count)
    return CrossDomainData.from_frames("hand", pd.DataFrame(rows, columns=["domain", "user", "item", "timestamp"]))


def test_source_history_and_per_bin_means() -> None:
    data = _data()
    users = np.array([int(np.flatnonzero(data.user_ids == f"u{u}")[0]) for u in range(4)])
    assert source_history(data, "movies", users).tolist() == [0, 4, 2, 60]
    result = EvalResult(users=users, per_user={"ndcg@10": np.array([0.1, 0.2, 0.3, 0.4]), "recall@10": np.array([1.0, 0.0, 0.5, 0.25])})
    tiers = {"ndcg@10[popularity head]": np.array([1.0, np.nan, 0.5, np.nan]),
             "ndcg@10[popularity torso]": np.full(4, np.nan), "ndcg@10[popularity tail]": np.array([0.0, 0.2, np.nan, 0.6])}
    out = record_breakdowns(result, tiers, train=data, target="movies", columns=["ndcg@10", "recall@10"],
                            popularity=np.array([4.0]), relevant_items=np.array([0, 0]))
    groups = out["source_history"]["groups"]
    assert groups["0"] == {"n_users": 1, "ndcg@10": 0.1, "recall@10": 1.0}
    assert groups["1-5"]["n_users"] == 2 and math.isclose(groups["1-5"]["ndcg@10"], 0.25) and groups["1-5"]["recall@10"] == 0.25
    assert groups["6-20"] == {"n_users": 0, "ndcg@10": None, "recall@10": None}
    assert groups["51+"] == {"n_users": 1, "ndcg@10": 0.4, "recall@10": 0.25}
    pop = out["item_popularity"]["groups"]
    assert pop["head"] == {"n_items": 1, "n_users": 2, "n_relevant": 2, "ndcg@10": 0.75}  # the one item is the head
    assert pop["torso"]["n_users"] == 0 and pop["torso"]["ndcg@10"] is None
    assert pop["tail"]["n_users"] == 3 and math.isclose(pop["tail"]["ndcg@10"], 0.8 / 3)


def test_the_evaluator_judges_each_tier_against_its_own_relevant_items() -> None:
    # one user, scores 4 > 3 > 2 > 1 over items 0..3; relevant: item 1 (head) and item 3 (tail)
    popularity = np.array([0.0, 10.0, 0.0, 0.0])  # item 1 holds every interaction: the head; the rest: tail
    truth = GroundTruth.from_pairs(np.array([0, 0]), np.array([1, 3]))
    res = evaluate(lambda users: torch.tensor([[4.0, 3.0, 2.0, 1.0]]).expand(len(users), 4).clone(), truth, n_items=4,
                   metrics={"ndcg": VALIDATION_SPEC}, ks=[10], item_groups=tier_groups(popularity))
    kept, tiers = split_tiers(res)
    assert set(kept.per_user) == {"ndcg@10"}  # the run's own metrics only
    assert math.isclose(tiers["ndcg@10[popularity head]"][0], 1 / math.log2(3))  # rank 1 (0-based), ideal: rank 0
    assert math.isclose(tiers["ndcg@10[popularity tail]"][0], 1 / math.log2(5))  # rank 3
    assert np.isnan(tiers["ndcg@10[popularity torso]"][0])


def _record(label: str, seed: int, ndcg: float, breakdowns: dict[str, Any] | None) -> dict[str, Any]:
    ev: dict[str, Any] = {"mode": "full", "columns": ["ndcg@10"], "primary": "ndcg@10", "metrics": {"ndcg@10": ndcg}, "lower_is_better": []}
    if breakdowns is not None:
        ev["breakdowns"] = breakdowns
    return {"model": {"label": label, "name": label}, "seed": seed, "dataset": {"name": "hand", "fingerprint": "f" * 64},
            "protocol": {"name": "cold-start", "target": "movies", "split_fingerprint": f"{seed}" * 64, "params": {}, "n_test_users": 4},
            "evaluation": ev, "timings": {"fit_s": 1.0}, "fit": {}}


def _bd(v0: float | None, v1: float, n0: int) -> dict[str, Any]:
    return {"source_history": {"bins": ["0", "1-5"], "groups": {"0": {"n_users": n0, "ndcg@10": v0}, "1-5": {"n_users": 3, "ndcg@10": v1}}}}


def test_boards_average_breakdowns_over_seeds_and_say_where_none_was_recorded() -> None:
    records = [_record("a", 0, 0.5, _bd(0.2, 0.6, 1)), _record("a", 1, 0.4, _bd(None, 0.5, 0)), _record("b", 0, 0.3, None)]
    data = breakdown_data(records[:2], ["ndcg@10"])
    assert data == {"source_history": {"0": {"n_users": 0.5, "ndcg@10": 0.2}, "1-5": {"n_users": 3.0, "ndcg@10": 0.55}}}
    text = render_breakdowns(records)
    assert "| 0 (0.5 users)" in text and "| 1-5 (3 users)" in text
    row_a = next(line for line in text.splitlines() if line.startswith("| a "))
    assert [c.strip() for c in row_a.split("|")[1:-1]] == ["a", "**0.2000**", "**0.5500**"]
    row_b = next(line for line in text.splitlines() if line.startswith("| b "))
    assert [c.strip() for c in row_b.split("|")[1:-1]] == ["b", "not recorded", "not recorded"]
    assert "By item popularity: not recorded for these runs." in text


def test_old_records_still_render() -> None:
    old = [_record("a", 0, 0.5, None), _record("b", 0, 0.3, None)]
    files = artefacts(old)
    board = files["leaderboard.md"].content.decode()
    assert "No breakdown: these runs were recorded before breakdowns were; rerun them to add it." in board
    sections = json.loads(files["leaderboard.json"].content)["sections"]
    assert [m["breakdowns"] for m in sections[0]["models"]] == [None, None]
    assert not any("source-history" in name or "item-popularity" in name for name in files)
    new = artefacts([_record("a", 0, 0.5, _bd(0.2, 0.6, 1))])
    assert any(name.endswith("-source-history.png") for name in new)
