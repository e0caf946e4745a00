"""Sampled evaluation: each relevant item ranked against N sampled negatives, only when asked for.

Sampled metrics are not full-ranking metrics: they can reverse which of two models wins
(Krichene and Rendle, KDD 2020). So a sampled result is marked everywhere it goes: its
``mode`` is ``"sampled"``, its ``sampling`` holds the strategy, the number of negatives,
the seed and the sha256 of the sample, and every key names the sampling, e.g.
``"ndcg@10:sampled-uniform-100"``, so a table can never put it in a full-ranking column.
:func:`require_same_mode` refuses to compare results of different modes or samples.

Negatives are drawn per user without replacement from the items that are neither held out
for that user nor excluded (training items): ``uniform``ly, or with probability
proportional to training ``popularity`` (successive sampling, by the Gumbel top-N trick).
The draw goes in fixed blocks of users seeded by ``(seed, block)``, so it depends on the
seed alone, not on the evaluation's chunk size.

A paper protocol (e.g. ``loo-999``, see :class:`crossbench.data.protocols.Evaluation`) draws its
negatives with :func:`protocol_negatives`: from the target items the user never interacted
with (not in training, not held out for validation, not held out for test), a function of the
split and the seed alone, so every model of a seed is ranked against the same negatives.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from crossbench.data.protocols import GroundTruth, Split, train_items
from crossbench.errors import CrossbenchError
from crossbench.evaluate import ties
from crossbench.evaluate.csr import DeviceRows, csr_take, row_lookup, sorted_rows
from crossbench.evaluate.inputs import check_inputs, check_ks
from crossbench.evaluate.ranking import EvalResult, chunk_scores
from crossbench.plugin.specs import MetricSpec

STRATEGIES = ("uniform", "popularity")
_BLOCK = 256


@dataclass(frozen=True)
class NegativeSample:
    """Sampled negatives ``items`` ``[n_users, n_negatives]``, aligned with the ground truth's users."""

    items: np.ndarray
    strategy: str
    n_negatives: int
    seed: int
    #: drawn with replacement (a user's negatives may repeat), as the papers' own code draws them
    replacement: bool = False

    @property
    def sha256(self) -> str:
        return hashlib.sha256(np.ascontiguousarray(self.items, dtype=np.int64).tobytes()).hexdigest()

    @property
    def tag(self) -> str:
        return f"sampled-{self.strategy}-{self.n_negatives}"

    def describe(self) -> dict[str, object]:
        out: dict[str, object] = {"strategy": self.strategy, "n_negatives": self.n_negatives, "seed": self.seed, "sha256": self.sha256}
        if self.replacement:  # recorded only where set: earlier samples keep their description
            out["replacement"] = True
        return out


def sampled_key(key: str, sample: NegativeSample) -> str:
    """The result key of ``key`` (``"ndcg@10"``) under ``sample``: ``"ndcg@10:sampled-uniform-100"``."""
    return f"{key}:{sample.tag}"


def draw_negatives(
    truth: GroundTruth,
    *,
    n_items: int,
    n_negatives: int,
    strategy: str = "uniform",
    popularity: np.ndarray | None = None,
    exclude: GroundTruth | None = None,
    seed: int = 0,
    replacement: bool = False,
) -> NegativeSample:
    """Draw ``n_negatives`` distinct negatives per user of ``truth`` (see the module docstring).

    With ``replacement`` (uniform only), each negative is drawn independently and uniformly from
    the user's allowed items, so negatives may repeat and a catalogue smaller than
    ``n_negatives`` is no obstacle: the way DisenCDR's and CDRIB's code draws its 999.
    """
    if replacement:
        return _draw_with_replacement(truth, n_items=n_items, n_negatives=n_negatives, strategy=strategy,
                                      exclude=exclude, seed=seed)
    if strategy not in STRATEGIES:
        from crossbench.errors import unknown_name_message

        raise CrossbenchError(unknown_name_message("negative sampling strategy", strategy, STRATEGIES))
    if n_negatives < 1:
        raise CrossbenchError(f"n_negatives must be at least 1, got {n_negatives}")
    if strategy == "popularity":
        if popularity is None or np.asarray(popularity).shape != (n_items,):
            raise CrossbenchError(f"popularity sampling needs popularity= of shape ({n_items},) (training counts per item)")
        log_w = np.log(np.asarray(popularity, dtype=np.float64), where=np.asarray(popularity) > 0,
                       out=np.full(n_items, -np.inf))
    else:
        log_w = np.zeros(n_items)
    ex_rows = row_lookup(exclude, truth.users) if exclude is not None else None
    out = np.empty((truth.n_users, n_negatives), dtype=np.int64)
    for b, start in enumerate(range(0, truth.n_users, _BLOCK)):
        stop = min(start + _BLOCK, truth.n_users)
        rng = np.random.default_rng([seed, b])
        keys = log_w[None, :] - np.log(-np.log(rng.random((stop - start, n_items))))
        rows, cols = csr_take(truth.indptr, truth.items, np.arange(start, stop))
        keys[rows, cols] = -np.inf
        if ex_rows is not None and exclude is not None:
            rows, cols = csr_take(exclude.indptr, exclude.items, ex_rows[start:stop])
            keys[rows, cols] = -np.inf
        allowed = np.isfinite(keys).sum(1)
        if allowed.min() < n_negatives:
            j = start + int(np.argmin(allowed))
            raise CrossbenchError(
                f"user {truth.users[j]} has only {allowed.min()} items left to sample from, fewer than "
                f"n_negatives={n_negatives}; lower n_negatives"
            )
        top = np.argpartition(-keys, n_negatives - 1, axis=1)[:, :n_negatives]
        out[start:stop] = np.sort(top, axis=1)
    return NegativeSample(items=out, strategy=strategy, n_negatives=n_negatives, seed=seed)


def _draw_with_replacement(
    truth: GroundTruth, *, n_items: int, n_negatives: int, strategy: str, exclude: GroundTruth | None, seed: int,
) -> NegativeSample:
    """``n_negatives`` independent uniform draws per user from the items neither held out nor excluded."""
    if strategy != "uniform":
        raise CrossbenchError(f"negatives drawn with replacement are uniform; got strategy {strategy!r}")
    if n_negatives < 1:
        raise CrossbenchError(f"n_negatives must be at least 1, got {n_negatives}")
    ex_rows = row_lookup(exclude, truth.users) if exclude is not None else None
    out = np.empty((truth.n_users, n_negatives), dtype=np.int64)
    for b, start in enumerate(range(0, truth.n_users, _BLOCK)):
        stop = min(start + _BLOCK, truth.n_users)
        rng = np.random.default_rng([seed, b, 1])
        allowed = np.ones((stop - start, n_items), dtype=bool)
        allowed[csr_take(truth.indptr, truth.items, np.arange(start, stop))] = False
        if ex_rows is not None and exclude is not None:
            allowed[csr_take(exclude.indptr, exclude.items, ex_rows[start:stop])] = False
        counts = allowed.sum(1)
        if counts.min() < 1:
            j = start + int(np.argmin(counts))
            raise CrossbenchError(f"user {truth.users[j]} has interacted with every item; there is no negative to draw")
        # each row's allowed items first, in item order; a uniform position among them per draw
        order = np.argsort(~allowed, axis=1, kind="stable")
        picks = (rng.random((stop - start, n_negatives)) * counts[:, None]).astype(np.int64)
        out[start:stop] = np.take_along_axis(order, picks, axis=1)
    return NegativeSample(items=out, strategy=strategy, n_negatives=n_negatives, seed=seed, replacement=True)


def protocol_negatives(split: Split, *, seed: int) -> NegativeSample:
    """The negatives of a sampled paper protocol's split (``split.evaluation.kind == "sampled"``).

    Uniform (or the evaluation's strategy) over the target items that are none of the user's
    positives: training interactions, validation items and test items are all excluded; with
    replacement where the evaluation says so (the papers' protocols).
    """
    ev = split.evaluation
    if ev.kind != "sampled":
        raise CrossbenchError(f"protocol {split.protocol!r} evaluates by {ev.label}, not by sampled negatives")
    target = split.train.domain(split.target)
    seen = train_items(split.train, split.target)
    counts = np.diff(split.valid.indptr)
    positives = GroundTruth.from_pairs(
        np.concatenate([np.repeat(seen.users, np.diff(seen.indptr)), np.repeat(split.valid.users, counts)]),
        np.concatenate([seen.items, split.valid.items]),
    )
    popularity = np.bincount(target.interactions["item"].to_numpy(), minlength=target.n_items)
    return draw_negatives(split.test, n_items=target.n_items, n_negatives=ev.n_negatives, strategy=ev.strategy,
                          popularity=popularity, exclude=positives, seed=seed, replacement=ev.replacement)


def evaluate_sampled(
    score_fn: Callable[[torch.Tensor], torch.Tensor],
    truth: GroundTruth,
    *,
    n_items: int,
    metrics: Mapping[str, MetricSpec],
    ks: Sequence[int],
    sample: NegativeSample,
    chunk_size: int = 1024,
    device: torch.device | str = "cpu",
    grades: np.ndarray | None = None,
) -> EvalResult:
    """Rank each user's relevant items among themselves and the user's sampled negatives.

    The tie rule is the full-ranking one. Only ``ranks`` and ``graded`` metrics apply.
    """
    ks = check_ks(ks)
    bad = [name for name, spec in metrics.items() if spec.inputs not in ("ranks", "graded")]
    if bad:
        raise CrossbenchError(f"metric(s) {', '.join(bad)} need the full ranking; they are not defined under sampled evaluation")
    if sample.items.shape[0] != truth.n_users:
        raise CrossbenchError(f"the negative sample covers {sample.items.shape[0]} users, the ground truth {truth.n_users}")
    g_all = check_inputs(truth, n_items, grades)
    device = torch.device(device)
    width = max(int(np.diff(truth.indptr).max()) if truth.n_users else 0, 1)
    rel_items, rel_grades = sorted_rows(truth, g_all)
    truth_dev = DeviceRows(truth.indptr, rel_items, device, values=rel_grades)
    n_neg = sample.n_negatives
    out: dict[str, list[np.ndarray]] = {sampled_key(f"{m}@{k}", sample): [] for m in metrics for k in ks}
    for start in range(0, truth.n_users, chunk_size):
        stop = min(start + chunk_size, truth.n_users)
        scores = chunk_scores(score_fn, truth.users[start:stop], n_items, device)
        rel, valid, g = truth_dev.padded(start, stop, width, n_items)
        neg = torch.as_tensor(sample.items[start:stop], device=device)
        cand = torch.cat([neg, rel.clamp(max=n_items - 1)], dim=1)
        sub = scores.gather(1, cand)
        pad = torch.cat([torch.ones_like(neg, dtype=torch.bool), valid], dim=1)
        sub = torch.where(pad, sub, torch.full_like(sub, ties.NEG_INF))
        positions = torch.arange(n_neg, n_neg + width, device=device).expand(stop - start, width)
        top = ties.top_k(sub, max(ks))
        ranks = ties.relevant_ranks(sub, top, positions, valid, g)
        n_rel = valid.sum(1).to(torch.float64)
        gains = torch.where(valid, g, torch.zeros_like(g))
        for k in ks:
            ranks_k = torch.where(ranks < k, ranks, torch.full_like(ranks, float("inf")))
            for name, spec in metrics.items():
                values = spec.compute(ranks_k, gains if spec.inputs == "graded" else n_rel, k)
                out[sampled_key(f"{name}@{k}", sample)].append(values.detach().to(torch.float64).cpu().numpy())
    per_user = {key: np.concatenate(parts) if parts else np.zeros(0) for key, parts in out.items()}
    return EvalResult(users=truth.users.copy(), per_user=per_user, mode="sampled", sampling=sample.describe())


def require_same_mode(results: Sequence[EvalResult]) -> None:
    """Raise unless all ``results`` are full-ranking, or all were sampled with the same sample."""
    kinds = {(r.mode, str(r.sampling.get("sha256", ""))) for r in results}
    if len(kinds) > 1:
        raise CrossbenchError(
            "cannot compare full-ranking and sampled results (or results of different samples): "
            f"found {sorted(kinds)}; evaluate every run the same way"
        )
