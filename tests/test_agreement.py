"""The agreement report: Kendall's tau-b and flipped pairs between a paper protocol's order and full ranking's."""

from __future__ import annotations

import math

import pytest
from scipy.stats import kendalltau

from crossbench.report.agreement import agreements, flipped_pairs, kendall_tau_b, render_agreement


def test_tau_b_of_a_hand_made_pair_of_orderings() -> None:
    # models A, B, C, D: the paper protocol orders them A > B > C > D; full ranking puts B above A.
    paper = [0.9, 0.8, 0.7, 0.6]
    full = [0.5, 0.7, 0.4, 0.3]
    # 6 pairs: (A,B) discordant, the other 5 concordant -> (5 - 1) / 6
    assert kendall_tau_b(paper, full) == pytest.approx(4 / 6, abs=1e-15)
    assert flipped_pairs(["A", "B", "C", "D"], paper, full) == [("A", "B")]
    assert kendall_tau_b(paper, paper) == 1.0
    assert kendall_tau_b(paper, paper[::-1]) == -1.0


def test_tau_b_with_ties_by_hand_and_against_scipy() -> None:
    x = [1.0, 1.0, 2.0, 3.0]
    y = [1.0, 2.0, 2.0, 3.0]
    # pairs: (0,1) tied in x; (0,2) C; (0,3) C; (1,2) tied in y; (1,3) C; (2,3) C
    # C = 4, D = 0, P = 6, Tx = 1, Ty = 1 -> 4 / sqrt(5 * 5) = 0.8
    assert kendall_tau_b(x, y) == pytest.approx(0.8, abs=1e-15)
    assert kendall_tau_b(x, y) == pytest.approx(kendalltau(x, y).statistic, abs=1e-12)
    cases = [
        ([0.31, 0.22, 0.22, 0.18, 0.40, 0.05], [0.12, 0.15, 0.09, 0.09, 0.20, 0.01]),
        ([3, 1, 4, 1, 5, 9, 2, 6], [2, 7, 1, 8, 2, 8, 1, 8]),
        ([0.5, 0.5, 0.5, 0.1], [0.2, 0.3, 0.3, 0.3]),
    ]
    for a, b in cases:
        assert kendall_tau_b(a, b) == pytest.approx(kendalltau(a, b).statistic, abs=1e-12)
    assert math.isnan(kendall_tau_b([1.0, 1.0], [1.0, 2.0]))  # a constant order: undefined, as in SciPy
    assert flipped_pairs(["a", "b"], [1.0, 1.0], [1.0, 2.0]) == []  # a tie is not a flip


def _record(model: str, seed: int, protocol: str, metrics: dict[str, float], *, sampled: bool) -> dict:
    return {
        "dataset": {"name": "hand", "fingerprint": "f" * 64},
        "protocol": {"name": protocol, "target": "tgt", "params": {}, "split_fingerprint": "s" * 64, "n_test_users": 3},
        "model": {"label": model, "name": model},
        "seed": seed,
        "timings": {"fit_s": 0.0},
        "evaluation": {
            "mode": "sampled" if sampled else "full",
            "sampling": {"strategy": "uniform", "n_negatives": 999, "sha256": "a" * 64} if sampled else {},
            "columns": list(metrics), "primary": next(iter(metrics)), "metrics": metrics,
        },
    }


def test_agreement_of_two_tables_from_records() -> None:
    key = "ndcg@10:sampled-uniform-999"
    paper = {"A": (0.50, 0.54), "B": (0.60, 0.62), "C": (0.30, 0.30)}  # two seeds each: A 0.52, B 0.61, C 0.30
    full = {"A": (0.20, 0.20), "B": (0.10, 0.12), "C": (0.05, 0.07)}  # A 0.20, B 0.11, C 0.06
    records = [_record(m, s, "loo-999", {key: v[s]}, sampled=True) for m, v in paper.items() for s in (0, 1)]
    records += [_record(m, s, "loo", {"ndcg@10": v[s]}, sampled=False) for m, v in full.items() for s in (0, 1)]
    [a] = agreements(records)
    assert (a.paper_metric, a.full_metric, a.full) == (key, "ndcg@10", "loo")
    assert a.paper.startswith("loo-999, sampled: 999 uniform negatives")
    assert [r[0] for r in a.rows] == ["B", "A", "C"]
    assert [round(r[1], 12) for r in a.rows] == [0.61, 0.52, 0.30]
    assert [round(r[2], 12) for r in a.rows] == [0.11, 0.20, 0.06]
    assert a.flips == (("B", "A"),)  # the sampled protocol puts B over A, full ranking A over B
    assert a.tau == pytest.approx(1 / 3, abs=1e-15)  # C = 2, D = 1 over 3 pairs
    text = render_agreement([a])
    assert "Kendall's tau-b between the two orders: 0.333 over 3 models" in text
    assert "A over B under loo, B over A under loo-999" not in text
    assert "B over A under loo-999, A over B under loo" in text
    assert "| B | 1 | 0.6100 | 2 | 0.1100 |" in text
    # a table alone, or two full-ranking tables, have nothing to agree on
    assert agreements(records[:6]) == []
    assert agreements([r for r in records if r["evaluation"]["mode"] == "full"]) == []
