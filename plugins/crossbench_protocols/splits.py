"""The built-in protocols: cold-start (the CDR standard, ranking form) and warm leave-one-out by time."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from crossbench.data.protocols import Evaluation, GroundTruth, Protocol, Split, pair_view
from crossbench.errors import CrossbenchError

if TYPE_CHECKING:
    from crossbench.data.model import CrossDomainData


@dataclass(frozen=True)
class ColdStart(Protocol):
    """Cold-start CDR, ranking form.

    Among users active in the target domain and in at least one other domain, a seeded
    ``test_fraction`` become test users and a disjoint ``valid_fraction`` validation users.
    All their target-domain interactions leave training and become their ground truth;
    their other domains stay in training.
    """

    target: str
    test_fraction: float = 0.5
    valid_fraction: float = 0.1
    seed: int = 0

    name = "cold-start"

    def __post_init__(self) -> None:
        self._check()

    def _check(self) -> None:
        if not 0 < self.test_fraction < 1 or not 0 <= self.valid_fraction < 1:
            raise CrossbenchError(
                f"cold-start: test_fraction must be in (0, 1) and valid_fraction in [0, 1), "
                f"got {self.test_fraction} and {self.valid_fraction}"
            )
        if self.test_fraction + self.valid_fraction >= 1:
            raise CrossbenchError(
                f"cold-start: test_fraction + valid_fraction must be below 1 so that some overlapping "
                f"users stay in training, got {self.test_fraction} + {self.valid_fraction}"
            )

    def split(self, data: CrossDomainData) -> Split:
        data, name, source = pair_view(data, self.target)
        target = data.domain(name)
        others = [d for d in data.domain_names if d != name]
        if not others:
            raise CrossbenchError(f"{self.name} needs a source domain besides {name!r}; dataset {data.name!r} has only one")
        source_users = np.unique(np.concatenate([data.domain(d).users() for d in others]))
        overlap = np.intersect1d(target.users(), source_users)
        if len(overlap) < 3:
            raise CrossbenchError(
                f"{self.name}: only {len(overlap)} users of dataset {data.name!r} are active in target "
                f"{name!r} and in {others}; need overlapping users (check user ids match across domains)"
            )
        rng = np.random.default_rng(self.seed)
        order = rng.permutation(overlap)
        n_test = max(1, int(round(self.test_fraction * len(overlap))))
        n_valid = int(round(self.valid_fraction * len(overlap)))
        test_users = np.sort(order[:n_test])
        valid_users = np.sort(order[n_test : n_test + n_valid])
        inter = target.interactions
        users = inter["user"].to_numpy()
        items = inter["item"].to_numpy()
        ratings = self._ratings(data, name)
        held = np.isin(users, np.concatenate([test_users, valid_users]))
        is_test = np.isin(users, test_users)
        is_valid = held & ~is_test
        test, valid = (
            GroundTruth.from_pairs(users[m], items[m], None if ratings is None else ratings[m]) for m in (is_test, is_valid)
        )
        domains = dict(data.domains)
        domains[name] = type(target)(name=target.name, interactions=inter[~held].reset_index(drop=True), items=target.items)
        params = {"test_fraction": self.test_fraction, "valid_fraction": self.valid_fraction, "seed": self.seed}
        return Split(
            protocol=self.name, target=name, train=data.with_domains(domains), valid=valid, test=test,
            params=params, cold=True, evaluation=self.evaluation(), source=source,
        )

    def _ratings(self, data: CrossDomainData, target: str) -> np.ndarray | None:
        """The target's ratings, aligned with its interactions, when the ground truth keeps them (rating task)."""
        return None


@dataclass(frozen=True)
class ColdStartRating(ColdStart):
    """Cold-start CDR, rating form (EMCDR, PTUPCDR): the cold-start split, judged by rating error.

    The test users are drawn as in :class:`ColdStart` (same seed, same users); the held-out
    ground truth keeps each (user, item) pair's rating, and a model is judged by the MAE and
    RMSE of its predicted ratings over all held-out ratings of the test users. Only models
    that declare ``predicts_ratings()`` run; the target domain needs a ``rating`` column
    (for MovieLens-100K keep every rating: ``[dataset] min_rating = 1``).
    """

    name = "cold-start-rating"

    def evaluation(self) -> Evaluation:
        return Evaluation("rating")

    def _ratings(self, data: CrossDomainData, target: str) -> np.ndarray:
        inter = data.domain(target).interactions
        if "rating" not in inter.columns:
            raise CrossbenchError(
                f"{self.name}: target {target!r} of dataset {data.name!r} has no ratings; load it with its rating column "
                "and keep every rating (e.g. [dataset] min_rating = 1), or use a ranking protocol"
            )
        values = inter["rating"].to_numpy(dtype=np.float64)
        if np.isnan(values).any():
            raise CrossbenchError(f"{self.name}: target {target!r} of dataset {data.name!r} has interactions without a rating")
        return values


@dataclass(frozen=True)
class Warm(Protocol):
    """Warm leave-one-out by time, under one global time cut.

    The cut ``T`` is ``cut_time`` if given, else the target-domain timestamp below which a
    ``cut_quantile`` share of target interactions lies. Training keeps the interactions of
    *every* domain made before ``T``, so no domain's future reaches training. Each user's
    last target item before ``T`` (when they have at least two) is their validation item
    and leaves training; a user who still has target history in training is a test user
    with the first target item at or after ``T`` that they had not met before. The split is
    deterministic; ``seed`` is accepted for a uniform interface and changes nothing.
    """

    target: str
    cut_quantile: float = 0.9
    cut_time: int | None = None
    seed: int = 0

    name = "warm"

    def split(self, data: CrossDomainData) -> Split:
        if self.cut_time is None and not 0 < self.cut_quantile < 1:
            raise CrossbenchError(f"warm: cut_quantile must be in (0, 1), got {self.cut_quantile}")
        data, target_name, source = pair_view(data, self.target)
        target = data.domain(target_name)
        inter = target.interactions
        ts = inter["timestamp"].to_numpy(dtype=np.int64)
        if self.cut_time is not None:
            cut = int(self.cut_time)
        else:
            ordered = np.sort(ts)
            cut = int(ordered[min(int(np.floor(self.cut_quantile * len(ordered))), len(ordered) - 1)])
        if cut <= ordered_min(ts):
            raise CrossbenchError(
                f"warm: the time cut {cut} leaves no target interaction of {target_name!r} before it; "
                "raise cut_quantile or cut_time (are the timestamps all equal?)"
            )
        # rows sorted by (user, timestamp, item): the order of time, ties by item index
        order = np.lexsort((inter["item"].to_numpy(), ts, inter["user"].to_numpy()))
        users = inter["user"].to_numpy()[order]
        items = inter["item"].to_numpy()[order]
        times = ts[order]
        before = times < cut
        n_items = target.n_items
        # validation: last item before the cut, for users with two or more distinct items there
        pre_u, pre_i = users[before], items[before]
        pair_pre = np.unique(pre_u * n_items + pre_i)
        distinct = np.bincount((pair_pre // n_items).astype(np.int64), minlength=data.n_users)
        last_pos = np.flatnonzero(np.r_[pre_u[1:] != pre_u[:-1], True]) if len(pre_u) else np.zeros(0, np.int64)
        cand_u, cand_i = pre_u[last_pos], pre_i[last_pos]
        has_valid = distinct[cand_u] >= 2
        valid_u, valid_i = cand_u[has_valid], cand_i[has_valid]
        valid_keys = valid_u * n_items + valid_i
        train_mask = before & ~np.isin(users * n_items + items, valid_keys)
        train_keys = np.unique(users[train_mask] * n_items + items[train_mask])
        warm_users = np.unique(users[train_mask])
        # test: first new item at or after the cut, for users with target history in training
        after = ~before & np.isin(users, warm_users)
        keys_after = users * n_items + items
        fresh = after & ~np.isin(keys_after, train_keys) & ~np.isin(keys_after, valid_keys)
        fu, fi = users[fresh], items[fresh]
        first = np.flatnonzero(np.r_[True, fu[1:] != fu[:-1]]) if len(fu) else np.zeros(0, np.int64)
        test = GroundTruth.from_pairs(fu[first], fi[first])
        valid = GroundTruth.from_pairs(valid_u, valid_i)
        if test.n_users == 0:
            raise CrossbenchError(
                f"warm: no user of {target_name!r} has target history before the cut {cut} and a new item after it; "
                "lower cut_quantile or cut_time"
            )
        domains = {}
        for name, dom in data.domains.items():
            frame = dom.interactions
            if name == target_name:
                keep = np.zeros(len(frame), dtype=bool)
                keep[order[train_mask]] = True
            else:
                keep = frame["timestamp"].to_numpy(dtype=np.int64) < cut
            domains[name] = type(dom)(name=dom.name, interactions=frame[keep].reset_index(drop=True), items=dom.items)
        params = {"cut_quantile": self.cut_quantile, "cut_time": cut}
        return Split(
            protocol=self.name, target=target_name, train=data.with_domains(domains), valid=valid, test=test,
            params=params, cut_time=cut, source=source,
        )


def ordered_min(values: np.ndarray) -> int:
    return int(values.min()) if len(values) else 0
