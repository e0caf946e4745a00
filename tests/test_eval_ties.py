"""The tie rule by hand, chunk-size and thread-count invariance, and the top-K list metrics
against a plain-Python re-implementation (RecBole's definitions of coverage, average
popularity and Gini index)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from crossbench.data.protocols import GroundTruth
from crossbench.errors import CrossbenchError
from crossbench.evaluate import evaluate, ties
from crossbench_basic.metrics import METRICS as BASIC
from crossbench_metrics.measures import METRICS as MORE

SPECS = {m.name: m for m in (*BASIC, *MORE)}


def _one(scores, relevant, ks, grades=None, exclude=()):
    s = torch.tensor([scores], dtype=torch.float32)
    truth = GroundTruth.from_pairs(np.zeros(len(relevant), np.int64), np.array(relevant))
    ex = GroundTruth.from_pairs(np.zeros(len(exclude), np.int64), np.array(exclude, dtype=np.int64)) if exclude else None
    g = None if grades is None else np.array([grades[i] for i in sorted(relevant)], dtype=np.float64)
    return evaluate(lambda u: s[u], truth, n_items=len(scores), metrics=SPECS, ks=ks, exclude=ex, grades=g,
                    item_popularity=np.arange(len(scores), dtype=np.float64))


def test_ties_put_relevant_items_last_by_index():
    # order: 2 (non-relevant, tied at 3), 1, 3 (relevant, tied at 3, by index), 4, 0, 5
    res = _one([1, 3, 3, 3, 2, 0], [1, 3], ks=[1, 2, 3])
    v = {k: float(a[0]) for k, a in res.per_user.items()}
    assert v["recall@1"] == 0.0 and v["recall@2"] == 0.5 and v["recall@3"] == 1.0
    assert v["mrr@3"] == 0.5
    assert v["map@3"] == pytest.approx((1 / 2 + 2 / 3) / 2, abs=1e-12)
    assert v["ndcg@3"] == pytest.approx((1 / np.log2(3) + 1 / np.log2(4)) / (1 + 1 / np.log2(3)), abs=1e-12)


def test_tied_relevant_items_lowest_grade_first():
    # items 1 (grade 3) and 3 (grade 1) tie: item 3 goes first, so the grade-3 item sits at rank 2
    res = _one([1, 3, 3, 3, 2, 0], [1, 3], ks=[3], grades={1: 3.0, 3: 1.0})
    dcg = 1 / np.log2(3) + 3 / np.log2(4)
    idcg = 3 + 1 / np.log2(3)
    assert float(res.per_user["ndcg-graded@3"][0]) == pytest.approx(dcg / idcg, abs=1e-12)


def test_constant_scores_earn_nothing():
    res = _one([0.0] * 10, [0, 5], ks=[8, 9, 10])
    v = {k: float(a[0]) for k, a in res.per_user.items()}
    assert v["hr@8"] == 0.0 and v["mrr@8"] == 0.0
    assert v["hr@9"] == 1.0 and v["mrr@9"] == pytest.approx(1 / 9)
    assert v["recall@10"] == 1.0


def test_tie_across_the_cut_off_is_counted_over_the_whole_row():
    # item 3 ties with 1, 2, 4 at the cut-off; non-relevant ones go first: rank 4
    res = _one([5, 4, 4, 4, 4, 1], [3], ks=[2, 4, 5])
    v = {k: float(a[0]) for k, a in res.per_user.items()}
    assert v["hr@2"] == 0.0 and v["hr@4"] == 0.0 and v["hr@5"] == 1.0 and v["mrr@5"] == 0.2


def test_excluded_items_are_never_ranked_or_retrieved():
    # item 0 is a training item; item 1 is relevant but also excluded: it never counts
    res = _one([9, 8, 1, 2, 0], [1, 2], ks=[1, 5], exclude=(0, 1))
    v = {k: float(a[0]) for k, a in res.per_user.items()}
    assert v["recall@5"] == 0.5 and v["mrr@5"] == 0.5 and v["precision@1"] == 0.0


def test_top_items_follow_the_rule():
    s = torch.tensor([[1, 3, 3, 3, 2, 0], [5, 4, 4, 4, 4, 1]], dtype=torch.float32)
    rel = torch.tensor([[1, 3], [3, 6]])
    valid = torch.tensor([[True, True], [True, False]])
    g = torch.ones(2, 2, dtype=torch.float64)
    top = ties.top_k(s, 3)
    assert top.ambiguous.tolist() == [False, True]
    assert ties.top_items(s, top, rel, valid, g).tolist() == [[2, 1, 3], [0, 1, 2]]


def test_nan_scores_are_rejected():
    with pytest.raises(CrossbenchError, match="NaN"):
        _one([1, float("nan"), 0], [0], ks=[1])


def _random(seed, n_users=160, n_items=90):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 6, size=(n_users, n_items)).astype(np.float32)
    tu, ti, eu, ei = [], [], [], []
    for u in range(n_users):
        p = rng.permutation(n_items)
        r, e = int(rng.integers(1, 12)), int(rng.integers(0, 30))
        tu += [u] * r
        ti += p[:r].tolist()
        eu += [u] * e
        ei += p[r : r + e].tolist()
    truth = GroundTruth.from_pairs(np.array(tu), np.array(ti))
    ex = GroundTruth.from_pairs(np.array(eu), np.array(ei))
    grades = rng.integers(1, 5, size=len(truth.items)).astype(np.float64)
    pop = rng.integers(0, 50, size=n_items).astype(np.float64)
    return scores, truth, ex, grades, pop


def _run(scores, truth, ex, grades, pop, **kw):
    t = torch.as_tensor(scores)
    groups = {"head": pop >= 25, "tail": pop < 25}
    return evaluate(lambda u: t[u], truth, n_items=scores.shape[1], metrics=SPECS, ks=[1, 5, 10, 50], exclude=ex,
                    grades=grades, item_popularity=pop, item_groups=groups, **kw)


def test_chunk_size_changes_no_metric():
    data = _random(3)
    base = _run(*data, chunk_size=10_000)
    for kw in ({"chunk_size": 1}, {"chunk_size": 7}, {"chunk_size": 64}, {"memory_budget_bytes": 12 * 90 * 33}):
        other = _run(*data, **kw)
        assert other.per_user.keys() == base.per_user.keys()
        for key, values in base.per_user.items():
            np.testing.assert_array_equal(other.per_user[key], values, err_msg=f"{key} with {kw}")
        assert other.catalog == base.catalog


def test_thread_count_changes_no_metric():
    data = _random(4)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = _run(*data, chunk_size=50)
        torch.set_num_threads(2)
        two = _run(*data, chunk_size=50)
    finally:
        torch.set_num_threads(before)
    for key, values in one.per_user.items():
        np.testing.assert_array_equal(two.per_user[key], values)


def _naive_lists(scores, truth, ex, grades, k):
    lists = []
    for j, u in enumerate(truth.users):
        rel = dict(zip(truth.items_of(j).tolist(), grades[truth.indptr[j] : truth.indptr[j + 1]].tolist()))
        row = np.flatnonzero(ex.users == u)
        banned = set(ex.items_of(int(row[0])).tolist()) if len(row) else set()
        cands = [i for i in range(scores.shape[1]) if i not in banned]
        cands.sort(key=lambda i: (-float(scores[u, i]), i in rel, rel.get(i, 0.0), i))
        lists.append(cands[:k])
    return lists


def test_beyond_accuracy_metrics_match_plain_definitions():
    scores, truth, ex, grades, pop = _random(5)
    res = _run(scores, truth, ex, grades, pop, chunk_size=33)
    n_items = scores.shape[1]
    for k in (1, 5, 10, 50):
        lists = _naive_lists(scores, truth, ex, grades, k)
        avg_pop = np.array([np.mean([pop[i] for i in lst]) for lst in lists])
        np.testing.assert_allclose(res.per_user[f"popularity@{k}"], avg_pop, rtol=0, atol=1e-9)
        counts = np.zeros(n_items)
        for lst in lists:
            for i in lst:
                counts[i] += 1
        assert res.catalog[f"coverage@{k}"] == pytest.approx((counts > 0).sum() / n_items, abs=1e-12)
        c = np.sort(counts)
        idx = np.arange(1, n_items + 1)
        gini = float(np.sum((2 * idx - n_items - 1) * c) / (n_items * c.sum()))
        assert res.catalog[f"gini@{k}"] == pytest.approx(gini, abs=1e-9)


def test_item_group_metrics_judge_only_the_groups_items():
    scores, truth, ex, grades, pop = _random(6, n_users=120)
    res = _run(scores, truth, ex, grades, pop, chunk_size=40)
    t = torch.as_tensor(scores)
    for name, mask in {"head": pop >= 25, "tail": pop < 25}.items():
        keep = mask[truth.items]
        users = np.repeat(truth.users, np.diff(truth.indptr))[keep]
        sub = GroundTruth.from_pairs(users, truth.items[keep])
        alone = evaluate(lambda u: t[u], sub, n_items=scores.shape[1], metrics=SPECS, ks=[5], exclude=ex,
                         grades=grades[keep], item_popularity=pop)
        pos = np.searchsorted(res.users, sub.users)
        for m in ("recall", "ndcg", "map", "ndcg-graded"):
            grouped = res.per_user[f"{m}@5[{name}]"]
            np.testing.assert_array_equal(grouped[pos], alone.per_user[f"{m}@5"])
            assert np.isnan(np.delete(grouped, pos)).all()


def test_device_and_host_row_expansion_agree():
    from crossbench.evaluate.csr import DeviceRows

    rng = np.random.default_rng(9)
    lengths = rng.integers(0, 6, size=40)
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    items = rng.integers(0, 100, size=int(indptr[-1]))
    values = rng.random(len(items))
    host = DeviceRows(indptr, items, torch.device("cpu"), values=values, on_host=True)
    dev = DeviceRows(indptr, items, torch.device("cpu"), values=values, on_host=False)
    rows = np.array([3, -1, 0, 39, 7, 7, -1])
    for a, b in zip(host.take(rows), dev.take(rows, torch.as_tensor(rows))):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    for a, b in zip(host.padded(5, 31, 6, 100), dev.padded(5, 31, 6, 100)):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_launching_ahead_changes_nothing(monkeypatch):
    import crossbench.evaluate.ranking as ranking

    data = _random(8, n_users=100)
    plain = _run(*data, chunk_size=9)
    monkeypatch.setattr(ranking, "_lookahead", lambda device: True)
    ahead = _run(*data, chunk_size=9)
    assert ahead.catalog == plain.catalog
    for key, values in plain.per_user.items():
        np.testing.assert_array_equal(ahead.per_user[key], values)


def test_float64_scores_are_not_cast_to_float32_ties():
    # 1 + 1e-12 and 1 are equal in float32 (a tie, relevant item ranked last) but not in float64
    eps = 1e-12
    assert np.float32(1.0 + eps) == np.float32(1.0)
    scores = torch.tensor([[1.0, 1.0 + eps, 0.5]], dtype=torch.float64)
    truth = GroundTruth.from_pairs(np.array([0]), np.array([1]))
    result = evaluate(lambda users: scores[users], truth, n_items=3, metrics={"ndcg": SPECS["ndcg"]}, ks=(1,))
    assert result.means["ndcg@1"] == 1.0  # float32 would make it a tie broken against the relevant item: 0.0
    as32 = evaluate(lambda users: scores[users].float(), truth, n_items=3, metrics={"ndcg": SPECS["ndcg"]}, ks=(1,))
    assert as32.means["ndcg@1"] == 0.0
