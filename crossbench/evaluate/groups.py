"""Breakdowns of a result by user group and by item group.

User groups (computed from the *training* data only, aligned with a result's users):

- ``cold`` / ``warm``: no / some training interactions in the target domain;
- ``overlap`` / ``no-overlap``: some / no training interactions in another domain;
- ``history [a,b)``: the number of training interactions over all domains, bucketed by
  ``history_edges`` (``history 0`` for none, the last bucket open-ended ``[e,inf)``).

Groups may overlap (a user is ``cold`` and ``overlap`` at once). :func:`breakdown` averages
each per-user metric within each group.

Item groups: :func:`head_tail` splits the target catalogue by training popularity; pass
the masks as ``evaluate(..., item_groups=...)`` to judge each metric against the head or
tail relevant items only (keys ``"recall@10[tail]"``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from crossbench.data.model import CrossDomainData
from crossbench.errors import CrossbenchError
from crossbench.evaluate.ranking import EvalResult


def item_popularity(train: CrossDomainData, target: str) -> np.ndarray:
    """Training interactions per item of ``target`` (float64 ``[n_items]``)."""
    d = train.domain(target)
    return np.bincount(d.interactions["item"].to_numpy(), minlength=d.n_items).astype(np.float64)


def head_tail(popularity: np.ndarray, *, head_share: float = 0.2) -> dict[str, np.ndarray]:
    """``head``: the ``ceil(head_share * n_items)`` most popular items (equal counts: lower index first); ``tail``: the rest."""
    if not 0 < head_share < 1:
        raise CrossbenchError(f"head_share must lie in (0, 1), got {head_share}")
    pop = np.asarray(popularity, dtype=np.float64)
    n_head = math.ceil(head_share * pop.size)
    order = np.lexsort((np.arange(pop.size), -pop))
    head = np.zeros(pop.size, dtype=bool)
    head[order[:n_head]] = True
    return {"head": head, "tail": ~head}


def user_groups(
    train: CrossDomainData, target: str, users: np.ndarray, *, history_edges: Sequence[int] = (1, 5, 10, 20, 50)
) -> dict[str, np.ndarray]:
    """Boolean masks aligned with ``users``: cold/warm, overlap/no-overlap and history-length buckets."""
    edges = [int(e) for e in history_edges]
    if not edges or edges[0] < 1 or any(b <= a for a, b in zip(edges, edges[1:])):
        raise CrossbenchError(f"history_edges must be increasing positive integers, got {list(history_edges)}")
    users = np.asarray(users, dtype=np.int64)
    counts = {name: np.bincount(d.interactions["user"].to_numpy(), minlength=train.n_users) for name, d in train.domains.items()}
    in_target = counts[train.domain(target).name][users]
    elsewhere = sum((c[users] for name, c in counts.items() if name != target), np.zeros(len(users), dtype=np.int64))
    total = in_target + elsewhere
    groups = {
        "cold": in_target == 0,
        "warm": in_target > 0,
        "overlap": elsewhere > 0,
        "no-overlap": elsewhere == 0,
        "history 0": total < edges[0],
    }
    for lo, hi in zip(edges, [*edges[1:], None]):
        label = f"history [{lo},{hi})" if hi is not None else f"history [{lo},inf)"
        groups[label] = (total >= lo) & (total < hi) if hi is not None else total >= lo
    return groups


def breakdown(result: EvalResult, groups: Mapping[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """For each group: ``{"n_users": n, "metric@k": mean over the group's users (NaN ignored)}``."""
    out: dict[str, dict[str, float]] = {}
    for name, mask in groups.items():
        m = np.asarray(mask)
        if m.dtype != bool or m.shape != result.users.shape:
            raise CrossbenchError(
                f"user group {name!r} must be a boolean mask aligned with the result's {len(result.users)} users"
            )
        row: dict[str, float] = {"n_users": float(m.sum())}
        for key, values in result.per_user.items():
            v = values[m]
            v = v[~np.isnan(v)]
            row[key] = float(v.mean()) if v.size else float("nan")
        out[name] = row
    return out
