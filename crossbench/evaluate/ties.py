"""The tie rule and the exact ranking kernels shared by full and sampled evaluation.

Tie rule (deterministic, pessimistic): items are ordered by score, highest first. Among
items with equal scores, every non-relevant item comes before every relevant one; tied
relevant items come in order of increasing grade (so the lowest-graded first; with binary
relevance all grades are 1), then of increasing item index; tied non-relevant items come
in order of increasing item index. An item scored ``-inf`` (every excluded training item
is) is never retrieved, wherever it would stand.

A model gains nothing from a tie, and the order is a total order fixed by the scores and
the ground truth alone, so no result depends on the chunk size, the thread count or the
device's ``topk`` tie-breaking.

Only the top ``K`` matters, so the kernels work from the top ``K + 1`` values of each row
(:func:`exact_topk`): every item scoring above the ``K``-th value lies in the top-K values,
and when the ``(K+1)``-th value differs from the ``K``-th no tie crosses the cut-off. Rows
where one does (rare with real-valued scores) are counted over the whole row.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from crossbench.errors import CrossbenchError

NEG_INF = float("-inf")
#: Items per group in the two-stage top-K of :func:`exact_topk` (a power of two, so that the
#: group maxima are one vectorised reduction).
GROUP = 64
NAN_MESSAGE = "the score function returned NaN scores; fix the model (or its inputs) so that every score is a number"


@dataclass(frozen=True)
class TopK:
    """``torch.topk`` of one chunk, with the rows whose ``K``-th value ties past the cut-off."""

    values: torch.Tensor  # [B, kq] float, descending (kq = min(K + 1, N))
    indices: torch.Tensor  # [B, kq] int64
    k: int  # the cut-off K, at most N
    ambiguous: torch.Tensor  # [B] bool: the (K+1)-th value equals the K-th
    any_ambiguous: bool | None = None  # ambiguous.any(), when already read back from the device

    def has_ambiguous(self) -> bool:
        return bool(self.ambiguous.any()) if self.any_ambiguous is None else self.any_ambiguous

    @property
    def kth(self) -> torch.Tensor:
        return self.values[:, self.k - 1 : self.k]


def exact_topk(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` largest values of each row of ``scores`` ``[B, N]`` (descending) and their indices.

    The values are exactly those of ``torch.topk(scores, k)`` (NaN counts as the largest, as
    there); among tied values any of the tied indices may be returned, as with ``torch.topk``.
    On CPU, for rows much longer than ``k``, it works in two stages, which costs a third to
    a half of a full ``torch.topk``: split each row into groups of :data:`GROUP` items, take
    each group's maximum, keep the ``k`` groups with the largest maxima, and take the top
    ``k`` of their items; the last, incomplete group's own top ``k`` are merged in.

    Why that is exact: let ``t`` be the ``k``-th largest group maximum. Fewer than ``k``
    groups have a maximum above ``t``, so all of them are kept, and with them every item
    scoring above ``t``. If ``c`` items score above ``t`` and ``c >= k``, the top ``k`` are
    all among them. Otherwise the top ``k`` are those ``c`` items and ``k - c`` items scoring
    exactly ``t``; the kept groups whose maximum is ``t`` number ``k`` minus the groups with a
    larger maximum, which is at least ``k - c`` (each of those groups holds a distinct item
    above ``t``), and each holds an item scoring ``t``.
    """
    b, n = scores.shape
    if scores.device.type != "cpu" or n < 4 * GROUP * k:
        return torch.topk(scores, k, dim=1, largest=True, sorted=True)
    n_groups = n // GROUP
    main = n_groups * GROUP
    blocks = scores[:, :main].reshape(b, n_groups, GROUP)
    groups = torch.topk(blocks.amax(2), k, dim=1, largest=True, sorted=False).indices  # [b, k]
    kept = _take_groups(scores, blocks, groups).reshape(b, k * GROUP)
    values, where = torch.topk(kept, k, dim=1, largest=True, sorted=True)
    indices = groups.gather(1, where // GROUP) * GROUP + where % GROUP
    if main < n:  # the last, incomplete group: its own top items, merged in
        tail_values, tail_indices = torch.topk(scores[:, main:], min(k, n - main), dim=1, sorted=False)
        both = torch.cat([values, tail_values], dim=1)
        values, where = torch.topk(both, k, dim=1, largest=True, sorted=True)
        indices = torch.cat([indices, tail_indices + main], dim=1).gather(1, where)
    return values, indices


def _take_groups(scores: torch.Tensor, blocks: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """The items of group ``groups[r, j]`` of each row ``r`` of ``scores``, ``[B, k, GROUP]``.

    ``blocks`` is ``scores``' whole groups as a ``[B, n_groups, GROUP]`` view.

    The kept groups lie scattered over a score matrix far larger than the cache, so this
    copies each as one 256-byte run: ``index_select`` over a view whose row ``i`` is the
    ``GROUP`` floats starting at flat offset ``i`` (4 to 5 times faster than ``gather``
    with a ``[B, k, GROUP]`` index at 50k to 100k items).
    """
    b, k = groups.shape
    if not scores.is_contiguous():
        return blocks.gather(1, groups.unsqueeze(2).expand(b, k, GROUP))
    n = scores.shape[1]
    starts = torch.arange(0, b * n, n, device=scores.device).unsqueeze(1) + groups * GROUP
    windows = torch.as_strided(scores, (scores.numel() - GROUP + 1, GROUP), (1, 1))
    return windows.index_select(0, starts.reshape(-1)).view(b, k, GROUP)


def top_k(scores: torch.Tensor, k: int, *, check_nan: bool = True) -> TopK:
    """Top ``k`` (+1) of each row of ``scores`` ``[B, N]``; rejects NaN scores unless the caller checks them."""
    n = scores.shape[1]
    kk = min(k, n)
    kq = min(kk + 1, n)
    values, indices = exact_topk(scores, kq)
    # topk orders NaN above every number, so a row holding NaN shows it first.
    if check_nan and values.shape[0] and bool(torch.isnan(values[:, 0]).any()):
        raise CrossbenchError(NAN_MESSAGE)
    if kq > kk:
        ambiguous = values[:, kk] == values[:, kk - 1]
    else:
        ambiguous = torch.zeros(values.shape[0], dtype=torch.bool, device=values.device)
    return TopK(values=values, indices=indices, k=kk, ambiguous=ambiguous)


def relevant_ranks(
    scores: torch.Tensor, top: TopK, relevant: torch.Tensor, valid: torch.Tensor, grades: torch.Tensor
) -> torch.Tensor:
    """0-based ranks of the ``relevant`` items of each row under the tie rule; ``inf`` past ``top.k``.

    ``relevant`` ``[B, R]`` item indices, ascending within a row over its ``valid`` entries;
    ``grades`` ``[B, R]`` float64 (any value on padding). Returns float64 ``[B, R]``.
    """
    b, r = relevant.shape
    if r == 0:
        return torch.zeros((b, 0), dtype=torch.float64, device=scores.device)
    s = scores.gather(1, relevant.clamp(0, scores.shape[1] - 1))
    s = torch.where(valid, s, torch.full_like(s, NEG_INF))
    neg_top = (-top.values[:, : top.k]).contiguous()  # ascending
    neg_s = (-s).contiguous()
    greater = torch.searchsorted(neg_top, neg_s, right=False)  # items scored above s
    equal = torch.searchsorted(neg_top, neg_s, right=True) - greater  # items scored s (exact when s > K-th)
    if top.has_ambiguous():
        rows = top.ambiguous.nonzero().squeeze(1)
        kth = top.kth[rows]
        full = (scores[rows] == kth).sum(1, keepdim=True)
        equal[rows] = torch.where(s[rows] == kth, full, equal[rows])
    # Relevant items in tie order: score desc, grade asc, index asc (positions are in index order).
    g = torch.where(valid, grades.to(torch.float64), torch.zeros_like(grades, dtype=torch.float64))
    by_grade = torch.sort(g, dim=1, stable=True).indices
    by_score = torch.sort(neg_s.gather(1, by_grade), dim=1, stable=True).indices
    perm = by_grade.gather(1, by_score)
    sorted_neg = neg_s.gather(1, perm).contiguous()
    left = torch.searchsorted(sorted_neg, sorted_neg, right=False)
    right = torch.searchsorted(sorted_neg, sorted_neg, right=True)
    pos = torch.arange(r, device=scores.device).expand(b, r)
    before = torch.empty_like(left).scatter_(1, perm, pos - left)  # tied relevant items ahead of it
    group = torch.empty_like(left).scatter_(1, perm, right - left)  # tied relevant items, itself included
    rank = greater + (equal - group).clamp(min=0) + before
    inside = valid & (s > NEG_INF) & (rank < top.k)
    inf = torch.full(rank.shape, float("inf"), dtype=torch.float64, device=rank.device)
    return torch.where(inside, rank.to(torch.float64), inf)


def _order(values: torch.Tensor, items: torch.Tensor, is_rel: torch.Tensor, grade: torch.Tensor) -> torch.Tensor:
    """Permutation of each row into tie-rule order: score desc, non-relevant first, grade asc, index asc."""
    perm = torch.sort(items, dim=1, stable=True).indices
    for key in (grade, is_rel.to(torch.int8), -values):
        perm = perm.gather(1, torch.sort(key.gather(1, perm), dim=1, stable=True).indices)
    return perm


def top_items(scores: torch.Tensor, top: TopK, relevant: torch.Tensor, valid: torch.Tensor, grades: torch.Tensor) -> torch.Tensor:
    """Each row's top ``top.k`` item indices in tie-rule order, int64 ``[B, K]``; ``-1`` for ``-inf`` items.

    ``relevant`` must be ascending within each row with padding (``valid`` false) at the end.
    """
    n = scores.shape[1]
    rel = torch.where(valid, relevant, torch.full_like(relevant, n))
    g = grades.to(torch.float64)

    def membership(items: torch.Tensor, rows: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        rr = rel if rows is None else rel[rows]
        gg = g if rows is None else g[rows]
        if rr.shape[1] == 0:
            return torch.zeros_like(items, dtype=torch.bool), torch.zeros_like(items, dtype=torch.float64)
        pos = torch.searchsorted(rr.contiguous(), items.contiguous()).clamp(max=rr.shape[1] - 1)
        hit = rr.gather(1, pos) == items
        return hit, torch.where(hit, gg.gather(1, pos), torch.zeros_like(items, dtype=torch.float64))

    vals = top.values[:, : top.k]
    items = top.indices[:, : top.k]
    is_rel, grade = membership(items, None)
    out = items.gather(1, _order(vals, items, is_rel, grade))
    out_vals = vals  # sorted descending already; reordering happens only within equal values
    if top.has_ambiguous():
        for row in top.ambiguous.nonzero().squeeze(1).tolist():
            kth = top.values[row, top.k - 1]
            above = top.indices[row, : top.k][top.values[row, : top.k] > kth]
            tied = (scores[row] == kth).nonzero().squeeze(1)
            cand = torch.cat([above, tied]).unsqueeze(0)
            cv = scores[row].gather(0, cand[0]).unsqueeze(0)
            rows = torch.tensor([row], device=scores.device)
            hit, gr = membership(cand, rows)
            chosen = cand.gather(1, _order(cv, cand, hit, gr))[:, : top.k]
            out[row] = chosen[0]
    final_vals = scores.gather(1, out) if top.has_ambiguous() else out_vals
    return torch.where(final_vals > NEG_INF, out, torch.full_like(out, -1))
