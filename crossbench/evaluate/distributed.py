"""Exact evaluation and exact top-K lists over several processes (``torch.distributed``).

Both functions run inside an initialised process group (``torch.distributed.init_process_group``,
gloo on CPU, NCCL on CUDA) and must be called by every rank of the group with the same
arguments (each rank's own score function aside).

**Sharded evaluation** (:func:`evaluate_sharded`). The test users are split into contiguous
blocks by their position in ``truth.users``: rank ``r`` of ``W`` evaluates positions
``[n*r // W, n*(r+1) // W)`` (:func:`block`) with the single-process evaluator
(:func:`crossbench.evaluate.ranking.evaluate`). The per-user values come back to one rank
(or to all), are concatenated in rank order, which is the global user order, and the means
are taken once over all users by :attr:`EvalResult.means`, the single-process reduction. Two
details keep every value bit-identical to one process whatever the number of ranks:

- the evaluator pads each user's relevant items to one width, the longest row of its ground
  truth, so that row sums are computed the same way for every user. A shard whose longest
  row is shorter than the global one gets the globally longest user appended (its values are
  dropped), so every shard is padded to the global width;
- catalogue-level metrics (``inputs="item_counts"``) need how many users' top K hold each item,
  over all users. Each rank records its users' top-K items through a ``top_items`` metric of
  its own, the integer counts are summed over the ranks, and each such metric is computed
  once from the global counts, as the evaluator does.

**Sharded top-K** (:func:`sharded_topk`, :func:`sharded_top_lists`). The catalogue is split into
contiguous item blocks (:func:`block` again); each rank scores its block, keeps its top K in the
evaluator's tie order (score descending, ties by increasing item index, ``-inf`` never listed:
see :mod:`crossbench.evaluate.lists`) with global item indices, and the ranks' lists are
merged into the global top K under the same order. The merge is exact: every item of the
global top K is in the top K of its own block, since the order restricted to a block is the
block's order.

A rank that raises before the exchange tells the others: every rank then raises a
:class:`~crossbench.errors.CrossbenchError` naming the failing rank and its error, instead of
waiting for it forever.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from crossbench.data.protocols import GroundTruth
from crossbench.errors import CrossbenchError
from crossbench.evaluate import ties
from crossbench.evaluate.csr import csr_take, row_lookup
from crossbench.evaluate.inputs import check_inputs
from crossbench.evaluate.lists import TopLists, lists_of
from crossbench.evaluate.ranking import EvalResult, chunk_scores, evaluate
from crossbench.plugin.specs import MetricSpec

#: Name of the metric that records each rank's top-K items for the catalogue-level metrics.
_RECORDER = "\x00top-k-items"


def block(n: int, rank: int, world: int) -> tuple[int, int]:
    """The contiguous block ``[start, stop)`` of ``n`` positions that rank ``rank`` of ``world`` owns.

    Blocks differ in size by at most one and are in rank order; ranks past ``n`` get empty ones.
    """
    if world < 1 or not 0 <= rank < world:
        raise CrossbenchError(f"rank {rank} is not a rank of a group of {world} processes")
    return n * rank // world, n * (rank + 1) // world


def _group_info(group: dist.ProcessGroup | None) -> tuple[int, int]:
    if not (dist.is_available() and dist.is_initialized()):
        raise CrossbenchError(
            "sharded evaluation needs a process group: call torch.distributed.init_process_group "
            "(gloo on CPU, nccl on CUDA) in every process first, or use crossbench.evaluate.evaluate in one process"
        )
    return dist.get_rank(group), dist.get_world_size(group)


def _agree(error: BaseException | None, group: dist.ProcessGroup | None) -> None:
    """Every rank learns whether any rank failed; all then raise, naming the first failing rank."""
    statuses: list[Any] = [None] * dist.get_world_size(group)
    dist.all_gather_object(statuses, None if error is None else f"{type(error).__name__}: {error}", group=group)
    failed = [(r, s) for r, s in enumerate(statuses) if s is not None]
    if failed:
        r, message = failed[0]
        raise CrossbenchError(f"rank {r} of the evaluation failed: {message}") from error


@dataclass
class _TopItemsRecorder:
    """Keeps the top-K items handed to a ``top_items`` metric, chunk by chunk, per cut-off."""

    seen: dict[int, list[torch.Tensor]] = field(default_factory=dict)

    def compute(self, items: torch.Tensor, popularity: torch.Tensor, k: int) -> torch.Tensor:
        self.seen.setdefault(k, []).append(items.detach().to("cpu", copy=True))
        return torch.zeros(items.shape[0], dtype=torch.float64, device=items.device)

    def counts(self, k: int, n_rows: int, n_items: int) -> np.ndarray:
        """How many of the first ``n_rows`` users' top ``k`` hold each item (int64 ``[n_items]``)."""
        parts = self.seen.get(k, [])
        items = torch.cat(parts)[:n_rows] if parts else torch.zeros((0, 1), dtype=torch.int64)
        return torch.bincount(items.reshape(-1) + 1, minlength=n_items + 1)[1:].numpy()


def _shard_truth(truth: GroundTruth, grades: np.ndarray | None, start: int, stop: int) -> tuple[GroundTruth, np.ndarray | None]:
    """Users ``[start, stop)`` of ``truth``, plus the globally longest user where the shard's rows are shorter."""
    lengths = np.diff(truth.indptr)
    rows = np.arange(start, stop, dtype=np.int64)
    if truth.n_users and (stop == start or lengths[start:stop].max() < lengths.max()):
        rows = np.append(rows, int(np.argmax(lengths)))
    _, items = csr_take(truth.indptr, np.arange(len(truth.items), dtype=np.int64), rows)
    indptr = np.concatenate([[0], np.cumsum(lengths[rows])]).astype(np.int64)
    values = None if truth.values is None else truth.values[items]
    shard = GroundTruth(truth.users[rows], indptr, truth.items[items], values)
    return shard, None if grades is None else np.asarray(grades)[items]


def evaluate_sharded(
    score_fn: Callable[..., torch.Tensor],
    truth: GroundTruth,
    *,
    n_items: int,
    metrics: Mapping[str, MetricSpec],
    ks: Sequence[int],
    exclude: GroundTruth | None = None,
    grades: np.ndarray | None = None,
    item_popularity: np.ndarray | None = None,
    item_groups: Mapping[str, np.ndarray] | None = None,
    chunk_size: int = 1024,
    device: torch.device | str = "cpu",
    group: dist.ProcessGroup | None = None,
    root: int = 0,
    everywhere: bool = False,
) -> EvalResult | None:
    """:func:`crossbench.evaluate.evaluate` with the users of ``truth`` shared out over the ranks of ``group``.

    Every rank calls it with the same arguments (``score_fn`` may differ: each scores the users
    it is given, by global user index, over the whole catalogue). Rank ``r`` evaluates the users
    of :func:`block` ``(truth.n_users, r, world)``. The result (per-user values in the order of
    ``truth.users``, catalogue-level values, means) is equal, bit for bit, to one process's
    :func:`~crossbench.evaluate.evaluate` on the same scores. It is returned on rank ``root``
    (a global rank) and ``None`` elsewhere, or on every rank with ``everywhere=True``.
    """
    rank, world = _group_info(group)
    payload: dict[str, Any] | None = None
    error: BaseException | None = None
    try:
        payload = _evaluate_block(score_fn, truth, rank=rank, world=world, n_items=n_items, metrics=metrics, ks=ks,
                                  exclude=exclude, grades=grades, item_popularity=item_popularity,
                                  item_groups=item_groups, chunk_size=chunk_size, device=device)
    except Exception as exc:  # shared with every rank below, then raised everywhere
        error = exc
    _agree(error, group)
    parts: list[Any] = [None] * world
    if everywhere:
        dist.all_gather_object(parts, payload, group=group)
    else:
        dist.gather_object(payload, parts if dist.get_rank() == root else None, dst=root, group=group)
        if dist.get_rank() != root:
            return None
    return _assemble(parts, truth, metrics=metrics, ks=ks, n_items=n_items)


def _evaluate_block(
    score_fn: Callable[..., torch.Tensor], truth: GroundTruth, *, rank: int, world: int, n_items: int,
    metrics: Mapping[str, MetricSpec], ks: Sequence[int], exclude: GroundTruth | None, grades: np.ndarray | None,
    item_popularity: np.ndarray | None, item_groups: Mapping[str, np.ndarray] | None, chunk_size: int,
    device: torch.device | str,
) -> dict[str, Any]:
    """This rank's per-user values (its own users only) and top-K item counts per cut-off."""
    check_inputs(truth, n_items, grades)  # before slicing the grades by the shard's items
    start, stop = block(truth.n_users, rank, world)
    shard, shard_grades = _shard_truth(truth, grades, start, stop)
    own = dict(metrics)
    catalog = [name for name, spec in own.items() if spec.inputs == "item_counts"]
    recorder = _TopItemsRecorder()
    for name in catalog:
        del own[name]
    if catalog:
        own[_RECORDER] = MetricSpec(_RECORDER, recorder.compute, inputs="top_items")
        if item_popularity is None:
            item_popularity = np.zeros(n_items, dtype=np.float64)
    result = evaluate(score_fn, shard, n_items=n_items, metrics=own, ks=ks, exclude=exclude, chunk_size=chunk_size,
                      device=device, grades=shard_grades, item_popularity=item_popularity, item_groups=item_groups)
    n_own = stop - start
    per_user = {key: np.asarray(v[:n_own]) for key, v in result.per_user.items() if not key.startswith(_RECORDER)}
    counts = {int(k): recorder.counts(int(k), n_own, n_items) for k in ks} if catalog else {}
    return {"rank": rank, "per_user": per_user, "counts": counts}


def _assemble(
    parts: list[Any], truth: GroundTruth, *, metrics: Mapping[str, MetricSpec], ks: Sequence[int], n_items: int,
) -> EvalResult:
    """The ranks' values in global user order, and the catalogue-level metrics from the summed counts."""
    parts = sorted(parts, key=lambda p: int(p["rank"]))
    keys = list(parts[0]["per_user"])
    per_user = {key: np.concatenate([np.asarray(p["per_user"][key], dtype=np.float64) for p in parts]) for key in keys}
    catalog: dict[str, float] = {}
    names = [name for name, spec in metrics.items() if spec.inputs == "item_counts"]
    for name in names:
        for k in sorted({int(k) for k in ks}):
            counts = torch.as_tensor(sum(np.asarray(p["counts"][k], dtype=np.int64) for p in parts))
            catalog[f"{name}@{k}"] = float(metrics[name].compute(counts, truth.n_users, k))
    return EvalResult(users=truth.users.copy(), per_user=per_user, catalog=catalog)


def merge_topk(values: torch.Tensor, items: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The top ``k`` of candidate lists, ``[B, M]`` ``values`` with global ``items`` (``-1``: none).

    Order: value descending, ties by increasing item index; ``-inf`` candidates and ``-1`` slots
    are never listed. Returns ``(items, values)`` ``[B, k]``, padded with ``-1`` and ``-inf``.
    """
    b, m = values.shape
    none = (items < 0) | (values == ties.NEG_INF)
    values = values.masked_fill(none, ties.NEG_INF)
    key = items.masked_fill(none, torch.iinfo(torch.int64).max)
    perm = torch.sort(key, dim=1, stable=True).indices
    perm = perm.gather(1, torch.sort(-values.gather(1, perm), dim=1, stable=True).indices)
    kk = min(k, m)
    top_items, top_values = items.gather(1, perm[:, :kk]), values.gather(1, perm[:, :kk])
    top_items = top_items.masked_fill(top_values == ties.NEG_INF, -1)
    if kk < k:
        top_items = torch.cat([top_items, top_items.new_full((b, k - kk), -1)], dim=1)
        top_values = torch.cat([top_values, top_values.new_full((b, k - kk), ties.NEG_INF)], dim=1)
    return top_items, top_values


def sharded_topk(
    local_scores: torch.Tensor, *, item_start: int, k: int, group: dist.ProcessGroup | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The global top ``k`` of the same users' scores split by items over the ranks of ``group``.

    Each rank passes the scores ``[B, n_block]`` of the items ``[item_start, item_start + n_block)``
    (excluded items already ``-inf``; every rank the same ``B`` users and ``k``). Returns, on
    every rank, ``(items, values)`` ``[B, k]``: global item indices in the evaluator's list order
    (:func:`crossbench.evaluate.lists.lists_of` on the whole catalogue's scores) and their scores.
    """
    _, world = _group_info(group)
    error: BaseException | None = None
    items = torch.full((local_scores.shape[0], k), -1, dtype=torch.int64, device=local_scores.device)
    values = torch.full(items.shape, ties.NEG_INF, dtype=local_scores.dtype, device=local_scores.device)
    try:
        if local_scores.shape[1]:
            local_items, values = lists_of(local_scores, k)
            items = torch.where(local_items >= 0, local_items + item_start, local_items)
    except Exception as exc:  # shared with every rank, then raised everywhere
        error = exc
    _agree(error, group)
    all_values = [torch.empty_like(values) for _ in range(world)]
    all_items = [torch.empty_like(items) for _ in range(world)]
    dist.all_gather(all_values, values.contiguous(), group=group)
    dist.all_gather(all_items, items.contiguous(), group=group)
    return merge_topk(torch.cat(all_values, dim=1), torch.cat(all_items, dim=1), k)


def sharded_top_lists(
    score_fn: Callable[[torch.Tensor, int, int], torch.Tensor],
    users: np.ndarray,
    *,
    n_items: int,
    k: int,
    exclude: GroundTruth | None = None,
    chunk_size: int = 1024,
    device: torch.device | str = "cpu",
    group: dist.ProcessGroup | None = None,
) -> TopLists:
    """:func:`crossbench.evaluate.lists.top_lists` with the catalogue split over the ranks of ``group``.

    Rank ``r`` owns the items of :func:`block` ``(n_items, r, world)`` and ``score_fn(users,
    start, stop)`` returns ``[len(users), stop - start]`` scores of those items only, so no
    rank holds the whole catalogue's scores. Every rank returns the same lists, equal to
    :func:`~crossbench.evaluate.lists.top_lists` over the whole catalogue, ties included.
    """
    if k < 1 or chunk_size < 1:
        raise CrossbenchError(f"k and chunk_size must be at least 1, got k={k}, chunk_size={chunk_size}")
    rank, world = _group_info(group)
    start, stop = block(n_items, rank, world)
    device = torch.device(device)
    users = np.asarray(users, dtype=np.int64)
    items_out, scores_out = [np.zeros((0, k), np.int64)], [np.zeros((0, k), np.float32)]

    def block_scores(u: torch.Tensor) -> torch.Tensor:
        return score_fn(u, start, stop)

    for first in range(0, len(users), chunk_size):
        chunk = users[first : first + chunk_size]
        try:
            scores = chunk_scores(block_scores, chunk, stop - start, device)
            if exclude is not None:
                rows, cols = csr_take(exclude.indptr, exclude.items, row_lookup(exclude, chunk))
                inside = (cols >= start) & (cols < stop)
                flat = torch.as_tensor(rows[inside] * (stop - start) + cols[inside] - start, device=device)
                scores.view(-1).index_fill_(0, flat, ties.NEG_INF)
        except Exception as exc:  # the other ranks learn of it in sharded_topk's exchange, and all raise
            _agree(exc, group)
            raise  # not reached: _agree raised on every rank
        items, values = sharded_topk(scores, item_start=start, k=k, group=group)
        items_out.append(items.cpu().numpy())
        scores_out.append(values.float().cpu().numpy())
    return TopLists(users, np.concatenate(items_out), np.concatenate(scores_out))
