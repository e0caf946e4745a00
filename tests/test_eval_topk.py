"""The two-stage exact top-K and the evaluator's reusable score buffer.

``exact_topk`` must return the very values of ``torch.topk`` on any row (ties, ``-inf``,
NaN, a last incomplete group), and a full evaluation over a catalogue large enough for the
two-stage path must agree with trec_eval and with the same evaluation through plain
``torch.topk``. A score function that writes into the evaluator's buffer must give the same
numbers as one that returns a new tensor, whatever the chunk size.
"""

from __future__ import annotations

import ir_measures
import numpy as np
import pytest
import torch
from ir_measures import RR, R, nDCG

import crossbench.evaluate.ranking as ranking
import crossbench.evaluate.ties as ties
from crossbench.data.protocols import GroundTruth
from crossbench.evaluate import evaluate
from crossbench.evaluate.ranking import accepts_out
from crossbench.evaluate.ties import GROUP, exact_topk
from crossbench_basic.metrics import METRICS as BASIC
from crossbench_metrics.measures import METRICS as MORE

SPECS = {m.name: m for m in (*BASIC, *MORE)}
N_ITEMS = 6_000  # above 4 * GROUP * (K + 1) for K = 20: the two-stage path runs


def _nan_last(values: torch.Tensor) -> torch.Tensor:
    return torch.nan_to_num(values, nan=3.0e38)


@pytest.mark.parametrize("seed", range(6))
def test_exact_topk_returns_torch_topk_values(seed):
    g = torch.Generator().manual_seed(seed)
    for _ in range(40):
        b = int(torch.randint(1, 12, (1,), generator=g))
        n = int(torch.randint(1, 40_000, (1,), generator=g))
        k = min(int(torch.randint(1, 60, (1,), generator=g)), n)
        levels = int(torch.randint(1, 40, (1,), generator=g))
        if seed % 2:
            s = torch.randint(0, levels, (b, n), generator=g).float()  # heavy ties, tied group maxima
        else:
            s = torch.randn(b, n, generator=g)
        if seed % 3 == 0:
            s[torch.rand(b, n, generator=g) < 0.4] = float("-inf")
        if seed == 4:
            s[0, int(torch.randint(0, n, (1,), generator=g))] = float("nan")
        values, indices = exact_topk(s, k)
        ref = torch.topk(s, k, dim=1).values
        assert torch.equal(_nan_last(values), _nan_last(ref)), (b, n, k)
        assert torch.equal(_nan_last(s.gather(1, indices)), _nan_last(values))
        assert (indices.sort(dim=1).values.diff(dim=1) != 0).all()  # distinct items


@pytest.mark.parametrize("layout", ["rows_of_a_buffer", "transposed", "column_slice"])
def test_exact_topk_on_views(layout):
    """Rows taken from a larger buffer (storage offset), and non-contiguous views, give topk's values."""
    g = torch.Generator().manual_seed(11)
    base = torch.randint(0, 50, (9, 7_001), generator=g).float()
    s = {"rows_of_a_buffer": base[3:8], "transposed": base.T.contiguous().T[2:6],
         "column_slice": base[:, 1:6_998]}[layout]
    for k in (1, 7, 21):
        values, indices = exact_topk(s, k)
        assert torch.equal(values, torch.topk(s, k, dim=1).values)
        assert torch.equal(s.gather(1, indices), values)
        assert (indices.sort(dim=1).values.diff(dim=1) != 0).all()


def test_exact_topk_engages_the_two_stage_path(monkeypatch):
    calls = []
    real = torch.topk

    def spy(x, k, *args, **kwargs):
        calls.append(tuple(x.shape))
        return real(x, k, *args, **kwargs)

    monkeypatch.setattr(ties.torch, "topk", spy)
    s = torch.randn(3, 10 * GROUP * 11 + 5)
    exact_topk(s, 11)
    # the group maxima, the kept groups' items, the 5 left over, the merge: never a whole row
    assert calls == [(3, 10 * 11), (3, 11 * GROUP), (3, 5), (3, 11 + 5)]


def _world(seed: int, n_users: int = 60):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 8, size=(n_users, N_ITEMS)).astype(np.float32)  # ties everywhere
    scores[:, rng.random(N_ITEMS) < 0.002] += 10.0  # a few clear winners, tied among themselves
    tu, ti, eu, ei = [], [], [], []
    for u in range(n_users):
        p = rng.permutation(N_ITEMS)
        winners = np.flatnonzero(scores[u] >= 10)
        r = int(rng.integers(1, 8))
        rel = np.unique(np.concatenate([p[:r], rng.choice(winners, size=min(2, len(winners)), replace=False)]))
        e = p[r : r + int(rng.integers(0, 40))]
        e = np.setdiff1d(e, rel)
        tu += [u] * len(rel)
        ti += rel.tolist()
        eu += [u] * len(e)
        ei += e.tolist()
    truth = GroundTruth.from_pairs(np.array(tu), np.array(ti))
    exclude = GroundTruth.from_pairs(np.array(eu), np.array(ei))
    return scores, truth, exclude


def _evaluate(scores, truth, exclude, **kw):
    t = torch.as_tensor(scores)
    pop = np.arange(N_ITEMS, dtype=np.float64) % 97
    return evaluate(lambda u: t[u], truth, n_items=N_ITEMS, metrics=SPECS, ks=[1, 5, 10, 20], exclude=exclude,
                    item_popularity=pop, item_groups={"head": pop >= 50, "tail": pop < 50}, **kw)


def test_two_stage_evaluation_matches_trec_eval():
    scores, truth, exclude = _world(11)
    res = _evaluate(scores, truth, exclude, chunk_size=17)
    run, qrels = {}, {}
    for j, u in enumerate(truth.users):
        rel = set(truth.items_of(j).tolist())
        row = np.flatnonzero(exclude.users == u)
        banned = set(exclude.items_of(int(row[0])).tolist()) if len(row) else set()
        cands = [i for i in range(N_ITEMS) if i not in banned]
        cands.sort(key=lambda i: (-float(scores[u, i]), i in rel, i))  # the tie rule, spelled out
        run[f"u{u}"] = {f"d{i}": float(len(cands) - pos) for pos, i in enumerate(cands)}
        qrels[f"u{u}"] = {f"d{i}": 1 for i in rel}
    for ours, measure in (("recall@20", R @ 20), ("ndcg@10", nDCG @ 10), ("mrr@20", RR @ 20)):
        per_q = {m.query_id: m.value for m in ir_measures.iter_calc([measure], qrels, run)}
        expected = np.array([per_q[f"u{u}"] for u in truth.users])
        np.testing.assert_allclose(res.per_user[ours], expected, rtol=0, atol=1e-9, err_msg=ours)
    assert res.means["recall@20"] > 0.1  # the planted winners are found, so the check is not vacuous


def test_two_stage_evaluation_equals_plain_topk(monkeypatch):
    scores, truth, exclude = _world(12, n_users=200)
    fast = _evaluate(scores, truth, exclude, chunk_size=33)
    monkeypatch.setattr(ties, "exact_topk", lambda s, k: torch.topk(s, k, dim=1, largest=True, sorted=True))
    plain = _evaluate(scores, truth, exclude, chunk_size=33)
    assert fast.per_user.keys() == plain.per_user.keys()
    for key, values in plain.per_user.items():
        np.testing.assert_array_equal(fast.per_user[key], values, err_msg=key)
    assert fast.catalog == plain.catalog


class _Dot:
    """A dot-product score function that writes into ``out``, counting the buffers it was given."""

    def __init__(self, users: torch.Tensor, items: torch.Tensor, mode: str) -> None:
        self.users, self.items, self.mode = users, items, mode
        self.buffers: set[int] = set()

    def __call__(self, u: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        assert out is not None and out.shape == (len(u), self.items.shape[0]) and out.dtype == torch.float32
        self.buffers.add(out.untyped_storage().data_ptr())
        torch.matmul(self.users[u], self.items.T, out=out)
        if self.mode == "in-place":
            return out
        if self.mode == "view":
            return out[:, :]
        return out.clone()  # writes, but hands back a new tensor


@pytest.mark.parametrize("mode", ["in-place", "view", "new"])
@pytest.mark.parametrize("lookahead", [False, True])
def test_score_buffer_changes_no_metric(mode, lookahead, monkeypatch):
    g = torch.Generator().manual_seed(5)
    users, items = torch.randn(97, 8, generator=g).round(), torch.randn(300, 8, generator=g).round()  # ties
    rng = np.random.default_rng(5)
    truth = GroundTruth.from_pairs(np.repeat(np.arange(97), 3), rng.integers(0, 300, size=291))
    exclude = GroundTruth.from_pairs(np.repeat(np.arange(97), 5), rng.integers(0, 300, size=485))
    kw = {"n_items": 300, "metrics": SPECS, "ks": [1, 10, 50], "exclude": exclude,
          "item_popularity": np.arange(300.0)}
    base = evaluate(lambda u: users[u] @ items.T, truth, chunk_size=1000, **kw)
    monkeypatch.setattr(ranking, "_lookahead", lambda device: lookahead)
    allocated: list[int] = []
    real_for = ranking._ScoreBuffers.for_

    def counting_for(score_fn, **kwargs):
        made = real_for(score_fn, **kwargs)
        allocated.extend(slot.shape[0] for slot in made.slots)
        return made

    monkeypatch.setattr(ranking._ScoreBuffers, "for_", counting_for)
    for chunk in (1, 10, 97):
        fn = _Dot(users, items, mode)
        allocated.clear()
        res = evaluate(fn, truth, chunk_size=chunk, **kw)
        assert len(fn.buffers) == (2 if lookahead and chunk < 97 else 1)  # reused, never one per chunk
        assert allocated == [chunk] * len(fn.buffers)  # a second buffer only when a next chunk exists
        assert res.catalog == base.catalog
        for key, values in base.per_user.items():
            np.testing.assert_array_equal(res.per_user[key], values, err_msg=f"{key}, chunk {chunk}")


def test_accepts_out():
    def plain(users):
        return users

    def keyword(users, *, out=None):
        return users

    assert not accepts_out(plain)
    assert accepts_out(keyword)
    assert accepts_out(_Dot(torch.zeros(1, 1), torch.zeros(1, 1), "new"))
