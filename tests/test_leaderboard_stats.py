"""Leaderboard significance counts each test user once; the pairwise table; the tuned and peak-memory columns.

The expected numbers are computed here by hand (plain dicts and lists, scipy's ttest_rel as
the oracle), independently of crossbench's statistics code.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats as sp

from crossbench.evaluate.peruser import save_per_user
from crossbench.evaluate.ranking import EvalResult
from crossbench.report.exports import table_data
from crossbench.report.leaderboard import leaderboard_table, pairwise_table, render_markdown, render_pairwise, significance, tuned_cell

SEEDS = (0, 1, 2)
USERS = np.arange(100, 130)
KEY = "ndcg@10"

Values = dict[int, dict[int, float]]  # seed -> user -> value


def _hand_holm(pvalues: list[float]) -> list[float]:
    """Holm by its definition: the i-th smallest times (m - i), running maximum, capped at 1."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    out, running = [0.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        out[i] = running
    return out


def _hand_user_means(a: Values, b: Values) -> tuple[list[float], list[float], list[tuple[float, float]]]:
    """Per-user means of A and B over the seeds holding the user, and the pooled (user, seed) pairs."""
    per_a: dict[int, list[float]] = defaultdict(list)
    per_b: dict[int, list[float]] = defaultdict(list)
    pooled = []
    for seed in SEEDS:
        for user, va in a[seed].items():
            vb = b[seed][user]
            if math.isnan(va) or math.isnan(vb):
                continue
            per_a[user].append(va)
            per_b[user].append(vb)
            pooled.append((va, vb))
    users = sorted(per_a)
    return [sum(per_a[u]) / len(per_a[u]) for u in users], [sum(per_b[u]) / len(per_b[u]) for u in users], pooled


def _record(tmp: Path, label: str, seed: int, values: dict[int, float], *, tuning: Any = None) -> dict[str, Any]:
    """A run record and its per-user file; users are stored in a model-specific order."""
    users = sorted(values, reverse=label.endswith("b"))
    v = np.array([values[u] for u in users])
    name = f"{label}-seed{seed}"
    sha = save_per_user(EvalResult(users=np.array(users), per_user={KEY: v, "recall@10": v / 2}), tmp / f"{name}.users.npz")
    mean = float(np.nanmean(v))
    return {
        "model": {"label": label, "tuning": tuning},
        "seed": seed,
        "dataset": {"name": "toy", "fingerprint": "f" * 64},
        "protocol": {
            "name": "cold-start", "target": "movies", "split_fingerprint": str(seed + 1) * 64,
            "n_test_users": len(users), "params": {"seed": seed, "test_fraction": 0.5},
        },
        "evaluation": {
            "columns": ["recall@10", KEY], "metrics": {"recall@10": mean / 2, KEY: mean},
            "per_user": {"path": f"{name}.users.npz", "sha256": sha}, "lower_is_better": [],
        },
        "timings": {"fit_s": 1.0},
        "_path": str(tmp / f"{name}.json"),
    }


@pytest.fixture()
def toy() -> dict[str, Values]:
    """Three models; each seed's test set is 18 of 30 users, so users recur across seeds.

    A user's gap to the best model is nearly the same in every seed that holds them, which
    is what makes pooling (user, seed) pairs overstate the evidence.
    """
    rng = np.random.default_rng(7)
    base = {int(u): float(rng.uniform(0.2, 0.6)) for u in USERS}
    gap_b = {u: float(rng.normal(0.015, 0.05)) for u in base}
    gap_c = {u: float(rng.normal(0.03, 0.05)) for u in base}
    models: dict[str, Values] = {"a": {}, "b": {}, "c": {}}
    for seed in SEEDS:
        test = [int(u) for u in rng.choice(USERS, size=18, replace=False)]
        noise = {u: float(rng.normal(0, 0.005)) for u in test}
        models["a"][seed] = {u: base[u] + noise[u] for u in test}
        models["b"][seed] = {u: base[u] - gap_b[u] + noise[u] for u in test}
        models["c"][seed] = {u: base[u] - gap_c[u] for u in test}
    models["b"][1][test[0]] = float("nan")  # undefined for one user in one seed: dropped there, for both models
    return models


def _records(tmp: Path, toy: dict[str, Values], labels: tuple[str, ...] = ("a", "b", "c")) -> list[dict[str, Any]]:
    return [_record(tmp, label, seed, toy[label][seed]) for label in labels for seed in SEEDS]


def test_users_recur_across_seeds(toy):
    held = [set(toy["a"][s]) for s in SEEDS]
    assert len(held[0] & held[1]) > 0 and len(held[0] | held[1] | held[2]) < 3 * 18


def test_p_vs_best_averages_each_user_over_seeds(tmp_path, toy):
    records = _records(tmp_path, toy)
    by_model = {label: [r for r in records if r["model"]["label"] == label] for label in "abc"}
    raw, pooled_raw = [], []
    for other in ("b", "c"):
        mean_a, mean_o, pooled = _hand_user_means(toy["a"], toy[other])
        assert len(mean_a) < len(pooled)  # users counted once, not once per seed
        raw.append(float(sp.ttest_rel(mean_a, mean_o).pvalue))
        pooled_raw.append(float(sp.ttest_rel([x for x, _ in pooled], [y for _, y in pooled]).pvalue))
    expected, pooled_p = _hand_holm(raw), _hand_holm(pooled_raw)
    got = significance(by_model, "a", KEY, None)
    assert got is not None
    assert got["b"] == pytest.approx(expected[0], rel=1e-9) and got["c"] == pytest.approx(expected[1], rel=1e-9)
    assert got["b"] > pooled_p[0] and got["c"] > pooled_p[1]
    assert 0.001 < got["b"] < 1 and 0.001 < got["c"] < 1  # the case is not degenerate

    header, rows = leaderboard_table(records)
    assert header[-1] == f"p vs best ({KEY}, Holm)" and [r[0] for r in rows] == ["a", "b", "c"]
    assert [r[-1] for r in rows] == ["—", f"{expected[0]:.3f}", f"{expected[1]:.3f}"]
    text = render_markdown(records)
    assert "paired t-test over test users, each user's values averaged over the seeds whose test set holds them" in text
    assert "(each user counted once), Holm-adjusted over the 2 models compared with the best." in text


def test_pairwise_table_three_models_by_hand(tmp_path, toy):
    records = _records(tmp_path, toy)
    pairs = [("a", "b"), ("a", "c"), ("b", "c")]
    diffs, raw = {}, []
    for row, col in pairs:
        mean_r, mean_c, _ = _hand_user_means(toy[row], toy[col])
        diffs[(row, col)] = sum(x - y for x, y in zip(mean_r, mean_c)) / len(mean_r)
        raw.append(float(sp.ttest_rel(mean_r, mean_c).pvalue))
    adjusted = dict(zip(pairs, _hand_holm(raw)))
    assert all(p >= 0.001 for p in adjusted.values())

    table = pairwise_table(records)
    assert table is not None
    header, rows = table.header, table.rows
    assert table.primary == KEY and header == ["model", "a", "b", "c"] and table.n_pairs == 3
    cells = {(r[0], col): cell for r in rows for col, cell in zip(header[1:], r[1:])}
    for row, col in pairs:
        assert cells[(row, col)] == f"{diffs[(row, col)]:+.4f} (p {adjusted[(row, col)]:.3f})"
        assert cells[(col, row)] == f"{-diffs[(row, col)]:+.4f} (p {adjusted[(row, col)]:.3f})"
    assert all(cells[(m, m)] == "—" for m in "abc")
    text = render_pairwise(records)
    assert text.startswith("## toy → movies (cold-start)")
    assert "Holm-adjusted over all 3 pairs of this table" in text and "paired t-test" in text


def test_missing_per_user_file_means_no_p_values(tmp_path, toy):
    records = _records(tmp_path, toy)
    (tmp_path / records[-1]["evaluation"]["per_user"]["path"]).unlink()
    header, _ = leaderboard_table(records)
    assert header[-1] == "tuned" and not any(h.startswith("p vs best") for h in header)
    assert "No pairwise table" in render_pairwise(records)
    assert "One model only" in render_pairwise(records[:3])


NEW = {
    "tuned": True, "budget": {"trials": 20, "timeout_s": None}, "trials_complete": 18, "trials_pruned": 2,
    "trials_failed": 0, "best_valid": 0.1234, "metric": KEY, "seconds": 321.5, "sampler": "TPESampler",
    "sampler_seed": 0, "pruner": "median", "study": "default/movies/seed0/b", "storage": "sqlite:///t/tuning.db",
    "space": ["dim", "lr"], "params": {"dim": 32, "lr": 0.01}, "selected_on": "validation users",
}
LEGACY = {"params": {"dim": 32}, "best_valid": 0.1, "metric": KEY, "trials": 20, "seconds": 9.0,
          "sampler": "optuna TPE", "selected_on": "validation users"}


def _tuned(**changes: Any) -> dict[str, Any]:
    return {**NEW, **changes}


def test_tuned_cells():
    def rows(*tunings: Any) -> list[dict[str, Any]]:
        return [{"model": {"label": "m", "tuning": t}} for t in tunings]

    assert tuned_cell(rows(None, None)) == "defaults"
    assert tuned_cell([{"model": {"label": "m"}}]) == "defaults"
    assert tuned_cell(rows(NEW)) == "20 trials (2 pruned), TPE"
    assert tuned_cell(rows(_tuned(budget={"trials": None, "timeout_s": 600.0}, trials_pruned=0))) == "600 s, TPE"
    both = _tuned(budget={"trials": 20, "timeout_s": 600.0}, trials_failed=1)
    assert tuned_cell(rows(both)) == "20 trials or 600 s (2 pruned, 1 failed), TPE"
    per_seed = [_tuned(study=f"default/movies/seed{s}/b", trials_pruned=p) for s, p in ((0, 2), (1, 3), (2, 0))]
    assert tuned_cell(rows(*per_seed)) == "3×20 trials (5 pruned), TPE"
    assert tuned_cell(rows(NEW, NEW, NEW)) == "20 trials (2 pruned), TPE"  # one shared study counts once
    mixed = [per_seed[0], _tuned(study="s1", budget={"trials": None, "timeout_s": 60.0}, trials_pruned=0), None]
    assert tuned_cell(rows(*mixed)) == "1×20 trials + 1×60 s (2 pruned), TPE; defaults for 1 seed"
    assert tuned_cell(rows(LEGACY, LEGACY)) == "20 trials, TPE*"
    assert tuned_cell(rows(_tuned(tuned=False))) == "defaults"


def test_tuned_column_in_the_table(tmp_path, toy):
    records = [
        *[_record(tmp_path, "a", s, toy["a"][s]) for s in SEEDS],
        *[_record(tmp_path, "b", s, toy["b"][s], tuning=_tuned(study=f"toy/movies/seed{s}/b")) for s in SEEDS],
    ]
    header, rows = leaderboard_table(records)
    col = header.index("tuned")
    assert header[col - 2 : col] == ["fit s", "peak MiB"]
    assert {r[0]: r[col] for r in rows} == {"a": "defaults", "b": "3×20 trials (6 pruned), TPE"}
    text = render_markdown(records)
    assert ("Tuning: each tuned row was tuned per split on that split's validation users with the budget shown; "
            "`defaults` rows were not tuned.") in text
    assert "earlier tuner" not in text
    legacy = [*records[:3], *[{**r, "model": {"label": "b", "tuning": LEGACY}} for r in records[3:]]]
    assert "Cells marked `*` come from records of the earlier tuner" in render_markdown(legacy)


def test_peak_memory_column_is_the_largest_peak_over_seeds(tmp_path, toy):
    def timed(label: str, seed: int, peak: float | None, scope: str | None) -> dict[str, Any]:
        rec = _record(tmp_path, label, seed, toy[label][seed])
        rec["model"]["name"] = label
        rec["timings"] = {"fit_s": 2.0 + seed, **({} if peak is None else {"peak_rss_mb": peak}),
                          **({} if scope is None else {"peak_rss_scope": scope})}
        return rec

    per_run = [timed("a", s, p, "run") for s, p in zip(SEEDS, (400.4, 512.6, 498.0))]
    process = [timed("b", s, p, sc) for s, p, sc in zip(SEEDS, (300.0, 290.0, 310.2), ("run", None, "run"))]
    unknown = [timed("c", s, None, None) for s in SEEDS]
    header, rows = leaderboard_table([*per_run, *process, *unknown])
    fit, peak = header.index("fit s"), header.index("peak MiB")
    cells = {r[0]: (r[fit], r[peak]) for r in rows}
    # fit s: mean of 2, 3, 4; peak: the largest of the three peaks, rounded; a process-wide peak marked
    assert cells == {"a": ("3.0", "513"), "b": ("3.0", "310 ‡"), "c": ("3.0", "—")}
    text = render_markdown([*per_run, *process, *unknown])
    assert "`peak MiB`: the largest over seeds of the run's peak resident memory" in text
    assert "Cells marked `‡` hold a peak of the whole process" in text
    assert "Cells marked `‡`" not in render_markdown(per_run)
    sections = table_data([*per_run, *process, *unknown])
    assert {m["model"]: m["peak_rss_mb"] for m in sections[0]["models"]} == {"a": 512.6, "b": 310.2, "c": None}
