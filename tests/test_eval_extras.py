"""Sampled evaluation, per-user files, group breakdowns and metric registration."""

from __future__ import annotations

import ir_measures
import numpy as np
import pandas as pd
import pytest
import torch
from ir_measures import AP, R, nDCG

from crossbench.data.model import CrossDomainData, Domain
from crossbench.data.protocols import GroundTruth
from crossbench.errors import CrossbenchError
from crossbench.evaluate import evaluate
from crossbench.evaluate.groups import breakdown, head_tail, item_popularity, user_groups
from crossbench.evaluate.peruser import load_per_user, save_per_user
from crossbench.evaluate.sampled import draw_negatives, evaluate_sampled, require_same_mode
from crossbench.plugin.manager import get_plugin_manager
from crossbench.plugin.registry import Registry
from crossbench_basic.metrics import METRICS as BASIC
from crossbench_metrics.measures import METRICS as MORE

SPECS = {m.name: m for m in (*BASIC, *MORE)}


def _data(n_users=500, n_items=80, seed=0):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 8, size=(n_users, n_items)).astype(np.float32)
    tu, ti, eu, ei = [], [], [], []
    for u in range(n_users):
        p = rng.permutation(n_items)
        r, e = int(rng.integers(1, 4)), int(rng.integers(0, 10))
        tu += [u] * r
        ti += p[:r].tolist()
        eu += [u] * e
        ei += p[r : r + e].tolist()
    return scores, GroundTruth.from_pairs(np.array(tu), np.array(ti)), GroundTruth.from_pairs(np.array(eu), np.array(ei))


@pytest.mark.parametrize("strategy", ["uniform", "popularity"])
def test_sampled_metrics_match_trec_eval_on_the_sampled_candidates(strategy):
    scores, truth, ex = _data()
    pop = np.arange(80, dtype=np.float64) % 7  # some items have popularity 0 and are never drawn
    sample = draw_negatives(truth, n_items=80, n_negatives=20, strategy=strategy, popularity=pop, exclude=ex, seed=3)
    again = draw_negatives(truth, n_items=80, n_negatives=20, strategy=strategy, popularity=pop, exclude=ex, seed=3)
    assert sample.sha256 == again.sha256
    t = torch.as_tensor(scores)
    metrics = {n: SPECS[n] for n in ("recall", "ndcg", "map")}
    res = evaluate_sampled(lambda u: t[u], truth, n_items=80, metrics=metrics, ks=[5, 10], sample=sample, chunk_size=64)
    assert res.mode == "sampled" and res.sampling["sha256"] == sample.sha256
    assert set(res.per_user) == {f"{m}@{k}:sampled-{strategy}-20" for m in metrics for k in (5, 10)}
    run, qrels = {}, {}
    for j, u in enumerate(truth.users):
        rel = set(truth.items_of(j).tolist())
        row = np.flatnonzero(ex.users == u)
        banned = set(ex.items_of(int(row[0])).tolist()) if len(row) else set()
        negs = sample.items[j].tolist()
        assert len(set(negs)) == 20 and not (set(negs) & (rel | banned))
        if strategy == "popularity":
            assert all(pop[i] > 0 for i in negs)
        cands = sorted(set(negs) | rel, key=lambda i: (-float(scores[u, i]), i in rel, i))
        run[f"u{u}"] = {f"d{i}": float(len(cands) - p) for p, i in enumerate(cands)}
        qrels[f"u{u}"] = {f"d{i}": 1 for i in rel}
    oracle = {}
    for m in ir_measures.iter_calc([R @ 5, nDCG @ 10, AP @ 10], qrels, run):
        oracle.setdefault(str(m.measure), {})[m.query_id] = m.value
    for ours, theirs in (("recall@5", "R@5"), ("ndcg@10", "nDCG@10"), ("map@10", "AP@10")):
        want = np.array([oracle[theirs][f"u{u}"] for u in truth.users])
        np.testing.assert_allclose(res.per_user[f"{ours}:sampled-{strategy}-20"], want, rtol=0, atol=1e-9)
    full = evaluate(lambda u: t[u], truth, n_items=80, metrics=metrics, ks=[5], exclude=ex)
    with pytest.raises(CrossbenchError, match="sampled"):
        require_same_mode([full, res])
    with pytest.raises(CrossbenchError, match="full ranking"):
        evaluate_sampled(lambda u: t[u], truth, n_items=80, metrics={"gini": SPECS["gini"]}, ks=[5], sample=sample)


def test_per_user_file_round_trip_and_hash(tmp_path):
    scores, truth, ex = _data(n_users=50)
    t = torch.as_tensor(scores)
    res = evaluate(lambda u: t[u], truth, n_items=80, metrics=SPECS, ks=[3, 10], exclude=ex,
                   item_popularity=np.ones(80), item_groups=head_tail(np.arange(80.0)))
    path = tmp_path / "runs" / "per_user.npz"
    digest = save_per_user(res, path)
    back = load_per_user(path, sha256=digest)
    assert back.mode == "full" and back.catalog == res.catalog and back.users.tolist() == res.users.tolist()
    for key, values in res.per_user.items():
        np.testing.assert_array_equal(back.per_user[key], values)
    assert back.means == pytest.approx(res.means, nan_ok=True)
    with pytest.raises(CrossbenchError, match="sha256"):
        load_per_user(path, sha256="0" * 64)


def test_user_groups_and_breakdown_by_hand():
    def dom(name, pairs, n_items):
        inter = pd.DataFrame({"user": [u for u, _ in pairs], "item": [i for _, i in pairs], "timestamp": range(len(pairs))})
        return Domain(name, inter, pd.DataFrame({"item_id": range(n_items), "title": "", "text": ""}))

    # user 0: target 2, source 0; user 1: target 0, source 6; user 2: target 1, source 1; user 3: nothing
    train = CrossDomainData("toy", np.arange(4), {
        "books": dom("books", [(1, i) for i in range(6)] + [(2, 0)], 6),
        "movies": dom("movies", [(0, 0), (0, 1), (2, 1)], 3),
    })
    np.testing.assert_array_equal(item_popularity(train, "movies"), [1, 2, 0])
    users = np.array([3, 0, 1, 2])
    g = user_groups(train, "movies", users, history_edges=(1, 3, 6))
    assert g["cold"].tolist() == [True, False, True, False]
    assert g["overlap"].tolist() == [False, False, True, True]
    assert g["history 0"].tolist() == [True, False, False, False]
    assert g["history [1,3)"].tolist() == [False, True, False, True]
    assert g["history [6,inf)"].tolist() == [False, False, True, False]
    from crossbench.evaluate.ranking import EvalResult

    res = EvalResult(users=users, per_user={"recall@5": np.array([0.0, 1.0, 0.5, np.nan])})
    b = breakdown(res, {"cold": g["cold"], "warm": g["warm"]})
    assert b["cold"] == {"n_users": 2.0, "recall@5": 0.25} and b["warm"] == {"n_users": 2.0, "recall@5": 1.0}
    ht = head_tail(np.array([5.0, 1.0, 5.0, 0.0, 9.0]), head_share=0.4)
    assert ht["head"].tolist() == [True, False, False, False, True]


def test_metrics_are_registered_through_the_plugin_hook():
    reg = Registry(get_plugin_manager())
    names = set(reg.names("metrics"))
    assert {"recall", "ndcg", "hr", "mrr", "map", "precision"} <= names
    assert {"ndcg-graded", "ndcg-exp", "popularity", "coverage", "gini"} <= names
    assert reg.plugin_of("metrics", "map") == "metrics"
    assert reg.get("metrics", "gini").inputs == "item_counts"


def test_list_metrics_need_popularity():
    scores, truth, ex = _data(n_users=5)
    with pytest.raises(CrossbenchError, match="item_popularity"):
        evaluate(lambda u: torch.as_tensor(scores)[u], truth, n_items=80, metrics={"popularity": SPECS["popularity"]}, ks=[5])
