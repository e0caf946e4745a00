"""Full-ranking evaluation over the whole target catalogue.

Users are scored in chunks: ``score_fn`` returns one chunk's ``[users, n_items]`` scores,
the chunk's training items are set to ``-inf`` with one indexed write, the top
``max(ks) + 1`` of each row are kept (:func:`crossbench.evaluate.ties.exact_topk`), and the
ranks of the relevant items follow from those values under the tie rule of
:mod:`crossbench.evaluate.ties`. Memory is bounded by one chunk of users times the
catalogue; every value is exact and independent of the chunk size.

A score function that takes an ``out`` keyword is handed one reusable ``[chunk, n_items]``
float32 buffer (on an accelerator, where two chunks are in flight, two when there is
more than one chunk) and may write the scores there and return it. Large score matrices are then not allocated afresh for every
chunk, which on CPU saves the operating system's page faults and zeroing: with
64-dimensional vectors they took about a third of the time of the product plus its top-K.
A score function without ``out`` (or one that returns another tensor) works as before.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from crossbench.data.protocols import GroundTruth
from crossbench.errors import CrossbenchError
from crossbench.evaluate import ties
from crossbench.evaluate.csr import DeviceRows, row_lookup, sorted_rows
from crossbench.evaluate.inputs import check_exclude, check_group_mask, check_inputs, check_ks
from crossbench.plugin.specs import MetricSpec
from crossbench.progress import progress_bar

#: Bytes of working memory per score in a chunk: the float32 scores plus the score
#: function's own temporaries and topk's workspace (a conservative factor of 3; on CUDA,
#: where the next chunk is launched before the current one is finished, it also covers
#: the two chunks' scores alive at once).
BYTES_PER_SCORE = 12


@dataclass(frozen=True)
class EvalResult:
    """Per-user values (``"metric@k"`` -> array aligned with ``users``), catalogue-level values and their means.

    ``mode`` is ``"full"`` (every item ranked) or ``"sampled"``; sampled results carry their
    sampling parameters and sample hash in ``sampling`` and every key names the sampling
    (see :mod:`crossbench.evaluate.sampled`). Per-user values are ``NaN`` where a metric is
    undefined for a user (an item group without relevant items for that user).
    """

    users: np.ndarray
    per_user: Mapping[str, np.ndarray]
    catalog: Mapping[str, float] = field(default_factory=dict)
    mode: str = "full"
    sampling: Mapping[str, object] = field(default_factory=dict)

    @property
    def means(self) -> dict[str, float]:
        """Mean over users (ignoring ``NaN``) of each per-user metric, plus the catalogue metrics."""
        out = {key: _nanmean(values) for key, values in self.per_user.items()}
        out.update({key: float(v) for key, v in self.catalog.items()})
        return out


def _nanmean(values: np.ndarray) -> float:
    ok = ~np.isnan(values)
    return float(values[ok].mean()) if ok.any() else float("nan")


def chunk_size_for(n_items: int, memory_budget_bytes: int) -> int:
    """Users per chunk so that one chunk's scores and temporaries fit ``memory_budget_bytes``."""
    return max(1, int(memory_budget_bytes) // (BYTES_PER_SCORE * max(n_items, 1)))


def group_key(key: str, group: str) -> str:
    """The key of ``key`` (``"recall@10"``) restricted to the relevant items of an item group."""
    return f"{key}[{group}]"


def evaluate(
    score_fn: Callable[..., torch.Tensor],
    truth: GroundTruth,
    *,
    n_items: int,
    metrics: Mapping[str, MetricSpec],
    ks: Sequence[int],
    exclude: GroundTruth | None = None,
    chunk_size: int = 1024,
    device: torch.device | str = "cpu",
    progress: bool = False,
    label: str = "evaluating",
    grades: np.ndarray | None = None,
    item_popularity: np.ndarray | None = None,
    item_groups: Mapping[str, np.ndarray] | None = None,
    memory_budget_bytes: int | None = None,
) -> EvalResult:
    """Rank every item for every user of ``truth`` and compute ``metrics`` at each ``k`` of ``ks``.

    ``score_fn(users)`` returns ``[len(users), n_items]`` scores (a fresh tensor: views are
    copied before masking); if it takes an ``out`` keyword it is called as
    ``score_fn(users, out=buffer)`` with a reusable float32 buffer of that shape, which it
    may fill and return (see the module's notes). Items in ``exclude`` (the users' training
    items) are never ranked. ``grades`` (float, aligned with ``truth.items``, all > 0) grade the held-out
    items for graded metrics; without it every held-out item has grade 1.
    ``item_popularity`` (``[n_items]`` training interaction counts) feeds ``top_items``
    metrics. ``item_groups`` maps a group name to a boolean ``[n_items]`` mask: each
    ``ranks``/``graded`` metric is also computed against the group's relevant items only,
    under the key ``"metric@k[group]"``. ``memory_budget_bytes``, when given, sets the
    chunk size instead of ``chunk_size`` (see :func:`chunk_size_for`).
    """
    ks = check_ks(ks)
    metrics = dict(metrics)
    plan = _Plan.build(metrics, item_popularity, n_items)
    grades_arr = check_inputs(truth, n_items, grades)
    check_exclude(exclude, n_items)
    groups = {name: check_group_mask(name, m, n_items) for name, m in (item_groups or {}).items()}
    if memory_budget_bytes is not None:
        chunk_size = chunk_size_for(n_items, memory_budget_bytes)
    if chunk_size < 1:
        raise CrossbenchError(f"chunk_size must be at least 1, got {chunk_size}")
    run = _Evaluation(score_fn, truth, plan, metrics=metrics, ks=ks, n_items=n_items, exclude=exclude, chunk_size=chunk_size,
                      device=torch.device(device), grades=grades_arr, item_popularity=item_popularity, groups=groups)
    pending: _Pending | None = None
    with progress_bar(range(0, truth.n_users, chunk_size), label=label, enabled=progress) as chunks:
        for start in chunks:
            current = run.score(start)
            if not run.lookahead:
                run.collect(current)
                continue
            if pending is not None:
                run.collect(pending)
            pending = current
    if pending is not None:
        run.collect(pending)
    return run.result()


class _Evaluation:
    """One evaluation on its device: the plan (what every chunk needs, built once), scoring a chunk
    (:meth:`score`), collecting its metrics (:meth:`collect`) and the result (:meth:`result`)."""

    def __init__(
        self, score_fn: Callable[..., torch.Tensor], truth: GroundTruth, plan: _Plan, *, metrics: dict[str, MetricSpec],
        ks: list[int], n_items: int, exclude: GroundTruth | None, chunk_size: int, device: torch.device,
        grades: np.ndarray, item_popularity: np.ndarray | None, groups: Mapping[str, np.ndarray],
    ) -> None:
        self.score_fn, self.truth, self.plan, self.metrics, self.ks = score_fn, truth, plan, metrics, ks
        self.n_items, self.chunk_size, self.device, self.kmax = n_items, chunk_size, device, max(ks)
        self.popularity = torch.as_tensor(np.asarray(item_popularity, dtype=np.float64), device=device) if plan.lists else None
        self.group_masks = {name: torch.as_tensor(m, device=device) for name, m in groups.items()}
        keys = [f"{m}@{k}" for m, spec in metrics.items() if spec.inputs != "item_counts" for k in ks]
        keys += [group_key(f"{m}@{k}", g) for g in groups for m in plan.relevance for k in ks]
        self.out: dict[str, list[torch.Tensor]] = {key: [] for key in keys}  # kept on the device until the end
        self.counts = {k: torch.zeros(n_items, dtype=torch.int64, device=device) for k in ks} if plan.counts else {}
        self.ex_rows = row_lookup(exclude, truth.users) if exclude is not None else None
        self.ex_dev = DeviceRows(exclude.indptr, exclude.items, device) if exclude is not None else None
        self.ex_rows_dev = torch.as_tensor(self.ex_rows, device=device) if self.ex_rows is not None else None
        self.users_dev = torch.as_tensor(np.asarray(truth.users, dtype=np.int64), device=device)
        self.nan_seen = torch.zeros((), dtype=torch.bool, device=device)
        rel_items, rel_grades = sorted_rows(truth, grades)
        self.truth_dev = DeviceRows(truth.indptr, rel_items, device, values=rel_grades)
        # One padded width for every chunk, so that row sums never depend on the chunk's makeup.
        self.width = max(int(np.diff(truth.indptr).max()) if truth.n_users else 0, 1)
        # On an accelerator the next chunk is launched before this one is finished, so that its
        # matrix product and top-K run while the host issues this chunk's small kernels. A second
        # buffer is allocated only when there is a next chunk.
        self.lookahead = _lookahead(device)
        self.buffers = _ScoreBuffers.for_(score_fn, rows=min(chunk_size, truth.n_users), n_items=n_items, device=device,
                                          count=2 if self.lookahead and truth.n_users > chunk_size else 1)

    def score(self, start: int) -> _Pending:
        """Score, mask and take the top K of one chunk (asynchronous on an accelerator)."""
        stop = min(start + self.chunk_size, self.truth.n_users)
        buffer = self.buffers.next(stop - start) if self.buffers is not None else None
        scores = chunk_scores(self.score_fn, self.users_dev[start:stop], self.n_items, self.device, out=buffer)
        if self.ex_dev is not None and self.ex_rows is not None and self.ex_rows_dev is not None:
            rows, cols = self.ex_dev.take(self.ex_rows[start:stop], self.ex_rows_dev[start:stop])
            scores.view(-1).index_fill_(0, rows * self.n_items + cols, ties.NEG_INF)
        top = ties.top_k(scores, self.kmax, check_nan=False)
        self.nan_seen = self.nan_seen | torch.isnan(top.values[:, 0]).any()  # checked once at the end
        return _Pending.launched(start, stop, scores, top)

    def collect(self, p: _Pending) -> None:
        """Ranks, metrics and top-K lists of a scored chunk."""
        plan, metrics, ks, n_items, out = self.plan, self.metrics, self.ks, self.n_items, self.out
        scores, top = p.scores, p.resolve()
        rel, valid, g = self.truth_dev.padded(p.start, p.stop, self.width, n_items)
        if plan.relevance:
            _relevance(out, metrics, plan, scores, top, rel, valid, g, ks, None)
            for name, gm in self.group_masks.items():
                in_group = valid & gm[rel.clamp(0, n_items - 1)]
                _relevance(out, metrics, plan, scores, top, rel, in_group, g, ks, name)
        if plan.lists or plan.counts:
            items = ties.top_items(scores, top, rel, valid, g)
            for k in ks:
                kk = min(k, items.shape[1])
                for name in plan.lists:
                    out[f"{name}@{k}"].append(metrics[name].compute(items[:, :kk], self.popularity, k).to(torch.float64))
                if plan.counts:  # shifted by one so that -1 (nothing listed) lands in a dropped bin
                    self.counts[k] += torch.bincount(items[:, :kk].reshape(-1) + 1, minlength=n_items + 1)[1:]

    def result(self) -> EvalResult:
        """The per-user values and catalogue-level values of every chunk collected."""
        if bool(self.nan_seen):
            raise CrossbenchError(ties.NAN_MESSAGE)
        per_user = {key: _np(torch.cat(parts)) if parts else np.zeros(0) for key, parts in self.out.items()}
        catalog = {
            f"{name}@{k}": float(self.metrics[name].compute(self.counts[k], self.truth.n_users, k))
            for name in self.plan.counts for k in self.ks
        }
        return EvalResult(users=self.truth.users.copy(), per_user=per_user, catalog=catalog)


def _lookahead(device: torch.device) -> bool:
    """Whether to launch chunk i+1 before finishing chunk i (worth it where kernels run asynchronously)."""
    return device.type == "cuda"


def accepts_out(score_fn: Callable[..., torch.Tensor]) -> bool:
    """Whether ``score_fn`` takes an ``out`` keyword (a buffer to write the scores into)."""
    try:
        params = inspect.signature(score_fn).parameters
    except (TypeError, ValueError):
        return False
    p = params.get("out")
    return p is not None and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)


@dataclass
class _ScoreBuffers:
    """Reusable ``[rows, n_items]`` float32 score buffers, handed out in turn."""

    slots: list[torch.Tensor]
    turn: int = 0

    @classmethod
    def for_(
        cls, score_fn: Callable[..., torch.Tensor], *, rows: int, n_items: int, device: torch.device, count: int
    ) -> _ScoreBuffers | None:
        if rows < 1 or not accepts_out(score_fn):
            return None
        return cls([torch.empty(rows, n_items, dtype=torch.float32, device=device) for _ in range(count)])

    def next(self, rows: int) -> torch.Tensor:
        slot = self.slots[self.turn]
        self.turn = (self.turn + 1) % len(self.slots)
        return slot[:rows]


@dataclass
class _Pending:
    """A launched chunk: its scores and top K, and (on CUDA) a flag copied back without waiting."""

    start: int
    stop: int
    scores: torch.Tensor
    top: ties.TopK
    flag: torch.Tensor
    event: torch.cuda.Event | None

    @classmethod
    def launched(cls, start: int, stop: int, scores: torch.Tensor, top: ties.TopK) -> _Pending:
        flag = top.ambiguous.any()
        event = None
        if scores.device.type == "cuda":
            flag = flag.to("cpu", non_blocking=True)
            event = torch.cuda.Event()
            event.record()
        return cls(start, stop, scores, top, flag, event)

    def resolve(self) -> ties.TopK:
        """The top K with its "any tie across the cut-off" flag read (waiting for this chunk only)."""
        if self.event is not None:
            self.event.synchronize()
        return dataclasses.replace(self.top, any_ambiguous=bool(self.flag))


@dataclass(frozen=True)
class _Plan:
    relevance: tuple[str, ...]
    lists: tuple[str, ...]
    counts: tuple[str, ...]

    @classmethod
    def build(cls, metrics: Mapping[str, MetricSpec], popularity: np.ndarray | None, n_items: int) -> _Plan:
        rel = tuple(n for n, s in metrics.items() if s.inputs in ("ranks", "graded"))
        lists = tuple(n for n, s in metrics.items() if s.inputs == "top_items")
        counts = tuple(n for n, s in metrics.items() if s.inputs == "item_counts")
        if lists and popularity is None:
            raise CrossbenchError(
                f"metric(s) {', '.join(lists)} need item popularity; pass item_popularity= (training interaction "
                "counts per target item) to evaluate()"
            )
        if lists and np.asarray(popularity).shape != (n_items,):
            raise CrossbenchError(f"item_popularity has shape {np.asarray(popularity).shape}, expected ({n_items},)")
        return cls(rel, lists, counts)


def _relevance(
    out: dict[str, list[torch.Tensor]],
    metrics: Mapping[str, MetricSpec],
    plan: _Plan,
    scores: torch.Tensor,
    top: ties.TopK,
    rel: torch.Tensor,
    valid: torch.Tensor,
    g: torch.Tensor,
    ks: Sequence[int],
    group: str | None,
) -> None:
    ranks = ties.relevant_ranks(scores, top, rel, valid, g)
    n_rel = valid.sum(1).to(torch.float64)
    gains = torch.where(valid, g, torch.zeros_like(g))
    empty = n_rel == 0
    for k in ks:
        ranks_k = ranks.masked_fill(ranks >= k, float("inf"))
        for name in plan.relevance:
            spec = metrics[name]
            second = gains if spec.inputs == "graded" else n_rel
            values = spec.compute(ranks_k, second, k).to(torch.float64)
            if group is not None:
                values = torch.where(empty, torch.full_like(values, float("nan")), values)
            key = f"{name}@{k}" if group is None else group_key(f"{name}@{k}", group)
            out[key].append(values)


def _np(t: torch.Tensor) -> np.ndarray:
    return np.asarray(t.detach().to(torch.float64).cpu().numpy())


def chunk_scores(
    score_fn: Callable[..., torch.Tensor],
    users: np.ndarray | torch.Tensor,
    n_items: int,
    device: torch.device,
    *,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    with torch.no_grad():
        u = torch.as_tensor(users, device=device)
        scores = score_fn(u) if out is None else score_fn(u, out=out)
    if out is not None and _same_tensor(scores, out):
        return scores  # our own buffer, written in place
    if tuple(scores.shape) != (len(users), n_items):
        raise CrossbenchError(
            f"the score function returned shape {tuple(scores.shape)} for {len(users)} users, expected {(len(users), n_items)}"
        )
    # float64 scores stay float64: casting them down could create ties their order did not have
    dtype = scores.dtype if scores.dtype in (torch.float32, torch.float64) else torch.float32
    if scores.device != device or scores.dtype != dtype:
        scores = scores.to(device=device, dtype=dtype)
    elif scores._is_view() or not scores.is_contiguous():
        scores = scores.clone(memory_format=torch.contiguous_format)
    if not scores.is_contiguous():
        scores = scores.contiguous()
    return scores


def _same_tensor(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a is b or (
        a.device == b.device and a.dtype == b.dtype and a.data_ptr() == b.data_ptr()
        and a.shape == b.shape and a.stride() == b.stride()
    )


def relevant_ranks(scores: torch.Tensor, relevant: torch.Tensor, valid: torch.Tensor, k: int) -> torch.Tensor:
    """0-based ranks of ``relevant`` items (``[B, R]``, ascending per row) under the tie rule; ``inf`` past ``k``."""
    top = ties.top_k(scores, k)
    return ties.relevant_ranks(scores, top, relevant, valid, torch.ones_like(relevant, dtype=torch.float64))
