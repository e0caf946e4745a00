"""Every ranking metric against trec_eval (through ir-measures / pytrec_eval) on random rankings.

The rankings have heavy score ties, excluded training items and graded relevance. The
oracle gets a run whose distinct scores spell out the documented tie rule (score desc,
non-relevant first, then lower grade, then lower item index), so it measures exactly the
list our evaluator claims to rank; tie handling itself is hand-checked in test_eval_ties.py.
"""

from __future__ import annotations

import ir_measures
import numpy as np
import pytest
import torch
from ir_measures import AP, RR, P, R, Success, nDCG

from crossbench.data.protocols import GroundTruth
from crossbench.evaluate import evaluate
from crossbench_basic.metrics import METRICS as BASIC
from crossbench_metrics.measures import METRICS as MORE

SPECS = {m.name: m for m in (*BASIC, *MORE)}
KS = (1, 3, 5, 10, 20, 100)
N_USERS, N_ITEMS = 3000, 70


def _world(seed: int):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 12, size=(N_USERS, N_ITEMS)).astype(np.float32)  # many ties
    scores[rng.random((N_USERS, N_ITEMS)) < 0.3] += rng.random() * 0.5  # some distinct values too
    t_users, t_items, ex_users, ex_items = [], [], [], []
    for u in range(N_USERS):
        perm = rng.permutation(N_ITEMS)
        n_rel = int(rng.integers(1, 9))
        n_ex = int(rng.integers(0, 15))
        t_users += [u] * n_rel
        t_items += perm[:n_rel].tolist()
        ex = perm[n_rel : n_rel + n_ex].tolist()
        if n_rel > 1 and rng.random() < 0.1:
            ex.append(int(perm[0]))  # a relevant item that is also a training item: never retrieved
        ex_users += [u] * len(ex)
        ex_items += ex
    truth = GroundTruth.from_pairs(np.array(t_users), np.array(t_items))
    exclude = GroundTruth.from_pairs(np.array(ex_users), np.array(ex_items))
    grades = rng.integers(1, 4, size=len(truth.items)).astype(np.float64)
    return scores, truth, exclude, grades


def _oracle_inputs(scores, truth, exclude, grades):
    run, qrels, qrels_bin = {}, {}, {}
    for j, u in enumerate(truth.users):
        rel = dict(zip(truth.items_of(j).tolist(), grades[truth.indptr[j] : truth.indptr[j + 1]].tolist()))
        row = np.flatnonzero(exclude.users == u)
        ex = set(exclude.items_of(int(row[0])).tolist()) if len(row) else set()
        cands = [i for i in range(N_ITEMS) if i not in ex]
        cands.sort(key=lambda i: (-float(scores[u, i]), i in rel, rel.get(i, 0.0), i))
        q = f"u{u}"
        run[q] = {f"d{i}": float(len(cands) - pos) for pos, i in enumerate(cands)}
        qrels[q] = {f"d{i}": int(g) for i, g in rel.items()}
        qrels_bin[q] = {f"d{i}": 1 for i in rel}
    return run, qrels, qrels_bin


def _per_user(measures, qrels, run):
    out: dict[str, dict[str, float]] = {}
    for m in ir_measures.iter_calc(measures, qrels, run):
        out.setdefault(str(m.measure), {})[m.query_id] = m.value
    return out


@pytest.fixture(scope="module")
def world():
    scores, truth, exclude, grades = _world(7)
    res = evaluate(
        lambda users: torch.as_tensor(scores)[users], truth, n_items=N_ITEMS, metrics=SPECS, ks=KS,
        exclude=exclude, chunk_size=256, grades=grades, item_popularity=np.arange(N_ITEMS, dtype=np.float64),
    )
    run, qrels, qrels_bin = _oracle_inputs(scores, truth, exclude, grades)
    return res, run, qrels, qrels_bin


BINARY = {"recall": R, "precision": P, "map": AP, "mrr": RR, "hr": Success, "ndcg": nDCG}


@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_metric_matches_trec_eval(world, name):
    res, run, _, qrels_bin = world
    measures = [BINARY[name] @ k for k in KS]
    oracle = _per_user(measures, qrels_bin, run)
    for k, m in zip(KS, measures):
        want = np.array([oracle[str(m)][f"u{u}"] for u in res.users])
        np.testing.assert_allclose(res.per_user[f"{name}@{k}"], want, rtol=0, atol=1e-9, err_msg=f"{name}@{k}")


def test_graded_ndcg_matches_trec_eval(world):
    res, run, qrels, _ = world
    lin = [nDCG @ k for k in KS]
    exp = [nDCG(gains={1: 1, 2: 3, 3: 7}) @ k for k in KS]
    oracle = {**_per_user(lin, qrels, run), **_per_user(exp, qrels, run)}
    for k, m_lin, m_exp in zip(KS, lin, exp):
        want_lin = np.array([oracle[str(m_lin)][f"u{u}"] for u in res.users])
        want_exp = np.array([oracle[str(m_exp)][f"u{u}"] for u in res.users])
        np.testing.assert_allclose(res.per_user[f"ndcg-graded@{k}"], want_lin, rtol=0, atol=1e-9)
        np.testing.assert_allclose(res.per_user[f"ndcg-exp@{k}"], want_exp, rtol=0, atol=1e-9)


def test_oracle_sees_real_ties(world):
    """The data must exercise the tie rule: many relevant items share their score with others."""
    scores, truth, _, _ = _world(7)
    tied = 0
    for j, u in enumerate(truth.users[:300]):
        s = scores[u]
        tied += sum(int((s == s[i]).sum() > 1) for i in truth.items_of(j))
    assert tied > 500
