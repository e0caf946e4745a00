"""Where a model wins and loses: its metrics broken down by the test user's source-history length
and by the popularity of the relevant items, as recorded with every run.

**Source-history length**: a test user's training interactions in every domain but the target
(for a domain pair ``comedy>drama``: in ``comedy``), in the fixed bins of :data:`HISTORY_BINS`
(``0``, ``1-5``, ``6-20``, ``21-50``, ``51+``). Fixed bins, not quantiles, so that every model and
every seed of a table shares them and a bin means the same on every board. Each bin's value of a
metric is the mean of its users' per-user values (the same values as the run's overall mean).

**Item popularity**: the target's items ordered by training interactions, most first (equal counts:
lower index first). ``head``: the items before which less than :data:`HEAD_SHARE` (20%) of all
training interactions lie, i.e. the most popular items that together hold the first 20% of them;
``tail``: the items before which at least 1 − :data:`TAIL_SHARE` (80%) lie, so the least popular
items holding the last 20%, and every item never taken in training (new items among them);
``torso``: the rest. Each tier's value of a ranking metric judges every user's full ranking
against the user's relevant items of that tier only (the evaluator's item groups, see
:func:`crossbench.evaluate.ranking.evaluate`), averaged over the users with a relevant item there.
Full-ranking runs only: sampled and rating evaluations record the source-history breakdown alone
(rating runs: none, their errors are not per user).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from crossbench.data.model import CrossDomainData
from crossbench.evaluate.ranking import EvalResult

#: Source-history bins ``(label, lowest, highest)``; ``None``: open-ended.
HISTORY_BINS: tuple[tuple[str, int, int | None], ...] = (("0", 0, 0), ("1-5", 1, 5), ("6-20", 6, 20), ("21-50", 21, 50), ("51+", 51, None))
#: Share of training interactions held by the head items, and by the tail items.
HEAD_SHARE = 0.2
TAIL_SHARE = 0.2
#: The popularity tiers, most popular first.
TIERS = ("head", "torso", "tail")
#: How a tier is named among the evaluator's item groups (``"ndcg@10[popularity tail]"``).
TIER_PREFIX = "popularity "


def source_history(train: CrossDomainData, target: str, users: np.ndarray) -> np.ndarray:
    """Training interactions of each of ``users`` in every domain other than ``target`` (int64, aligned)."""
    users = np.asarray(users, dtype=np.int64)
    total = np.zeros(len(users), dtype=np.int64)
    for name, dom in train.domains.items():
        if name != target:
            total += np.bincount(dom.interactions["user"].to_numpy(dtype=np.int64), minlength=train.n_users)[users]
    return total


def history_bins(lengths: np.ndarray) -> dict[str, np.ndarray]:
    """Boolean masks aligned with ``lengths``, one per bin of :data:`HISTORY_BINS`."""
    lengths = np.asarray(lengths)
    return {label: (lengths >= lo) & (lengths <= (hi if hi is not None else np.iinfo(np.int64).max))
            for label, lo, hi in HISTORY_BINS}


def popularity_tiers(popularity: np.ndarray) -> dict[str, np.ndarray]:
    """``head`` / ``torso`` / ``tail`` boolean ``[n_items]`` masks from training interaction counts (see the module)."""
    pop = np.asarray(popularity, dtype=np.float64)
    order = np.lexsort((np.arange(pop.size), -pop))
    before = np.empty(pop.size)
    before[order] = np.cumsum(pop[order]) - pop[order]  # interactions of the items ranked before each item
    total = pop.sum()
    head = before < HEAD_SHARE * total
    tail = before >= (1 - TAIL_SHARE) * total
    return {"head": head, "torso": ~head & ~tail, "tail": tail}


def tier_groups(popularity: np.ndarray) -> dict[str, np.ndarray]:
    """:func:`popularity_tiers` named as the evaluator's item groups (``"popularity head"``...)."""
    return {TIER_PREFIX + name: mask for name, mask in popularity_tiers(popularity).items()}


def split_tiers(result: EvalResult) -> tuple[EvalResult, dict[str, np.ndarray]]:
    """``result`` without the tier groups' per-user values, and those values by key: the record's means
    and per-user file keep the run's own metrics; the tiers go into its breakdown."""
    tiers = {k: v for k, v in result.per_user.items() if f"[{TIER_PREFIX}" in k}
    kept = {k: v for k, v in result.per_user.items() if k not in tiers}
    return replace(result, per_user=kept), tiers


def _means(values: Mapping[str, np.ndarray], mask: np.ndarray, columns: Sequence[str], suffix: str = "") -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for c in columns:
        v = values.get(c + suffix)
        if v is None:
            continue
        v = v[mask]
        v = v[~np.isnan(v)]
        out[c] = float(v.mean()) if v.size else None
    return out


def record_breakdowns(
    result: EvalResult, tiers: Mapping[str, np.ndarray], *, train: CrossDomainData, target: str, columns: Sequence[str],
    popularity: np.ndarray, relevant_items: np.ndarray,
) -> dict[str, Any]:
    """The run record's ``evaluation.breakdowns``: per bin and per tier the number of users (tiers: also
    of items and of relevant test pairs) and the mean of every column; ``{}`` without per-user values."""
    if not result.per_user:
        return {}
    lengths = source_history(train, target, result.users)
    history = {}
    for label, mask in history_bins(lengths).items():
        history[label] = {"n_users": int(mask.sum()), **_means(result.per_user, mask, columns)}
    out: dict[str, Any] = {"source_history": {"bins": [b[0] for b in HISTORY_BINS], "groups": history}}
    if tiers:
        items = popularity_tiers(popularity)
        groups = {}
        for name, mask in items.items():
            suffix = f"[{TIER_PREFIX}{name}]"
            values = {c: tiers[c + suffix] for c in columns if c + suffix in tiers}
            n_users = int((~np.isnan(next(iter(values.values())))).sum()) if values else 0
            groups[name] = {"n_items": int(mask.sum()), "n_users": n_users, "n_relevant": int(mask[relevant_items].sum()),
                            **_means(values, np.ones(len(result.users), dtype=bool), columns)}
        out["item_popularity"] = {"tiers": list(TIERS), "head_share": HEAD_SHARE, "tail_share": TAIL_SHARE, "groups": groups}
    return out
