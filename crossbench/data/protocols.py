"""Evaluation protocols: how a dataset becomes training data plus held-out ground truth."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from crossbench.data.model import CrossDomainData
from crossbench.errors import CrossbenchError, closest, unknown_name_message


@dataclass(frozen=True)
class GroundTruth:
    """Held-out items per user, as CSR: user ``users[j]`` has items ``items[indptr[j]:indptr[j+1]]``."""

    users: np.ndarray
    indptr: np.ndarray
    items: np.ndarray

    @property
    def n_users(self) -> int:
        return len(self.users)

    def items_of(self, j: int) -> np.ndarray:
        return self.items[self.indptr[j] : self.indptr[j + 1]]

    @classmethod
    def from_pairs(cls, users: np.ndarray, items: np.ndarray) -> GroundTruth:
        """Group (user, item) pairs; users sorted, each user's items sorted and unique."""
        if len(users) == 0:
            return cls(np.zeros(0, np.int64), np.zeros(1, np.int64), np.zeros(0, np.int64))
        pairs = np.unique(np.stack([users.astype(np.int64), items.astype(np.int64)], axis=1), axis=0)
        u, counts = np.unique(pairs[:, 0], return_counts=True)
        indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return cls(u, indptr, pairs[:, 1].copy())

    def digest(self, h: hashlib._Hash) -> None:
        for a in (self.users, self.indptr, self.items):
            h.update(np.ascontiguousarray(a, dtype=np.int64).tobytes())


@dataclass(frozen=True)
class FitSplit:
    """A split as a model sees it while fitting or tuning: training data and validation users only.

    It has no test ground truth at all: the runner alone holds :attr:`Split.test` and hands it to
    the evaluator, so no recommender, tuner or early-stopping rule can read it.
    """

    protocol: str
    target: str
    train: CrossDomainData
    valid: GroundTruth
    params: Mapping[str, object] = field(default_factory=dict)
    #: True when every target-domain interaction of the test and validation users is held
    #: out (cold-start): the audit then checks that none of them reaches training.
    cold: bool = False
    #: Temporal protocols: every training interaction, in every domain, is before this time.
    cut_time: int | None = None


@dataclass(frozen=True)
class Split(FitSplit):
    """Training data and held-out validation and test ground truth for one target domain."""

    test: GroundTruth = field(kw_only=True)

    def fingerprint(self) -> str:
        """sha256 of the training data, the ground truth and the protocol parameters."""
        h = hashlib.sha256()
        h.update(self.protocol.encode())
        h.update(self.target.encode())
        h.update(repr(sorted(self.params.items())).encode())
        h.update(self.train.fingerprint().encode())
        self.valid.digest(h)
        self.test.digest(h)
        return h.hexdigest()

    def fit_view(self) -> FitSplit:
        """What a model may learn from: the training data and the validation ground truth, no test set."""
        return FitSplit(**{f.name: getattr(self, f.name) for f in dataclasses.fields(FitSplit)})


@dataclass(frozen=True)
class ColdStart:
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
        target = data.domain(self.target)
        others = [d for d in data.domain_names if d != self.target]
        if not others:
            raise CrossbenchError(f"cold-start needs a source domain besides {self.target!r}; dataset {data.name!r} has only one")
        source_users = np.unique(np.concatenate([data.domain(d).users() for d in others]))
        overlap = np.intersect1d(target.users(), source_users)
        if len(overlap) < 3:
            raise CrossbenchError(
                f"cold-start: only {len(overlap)} users of dataset {data.name!r} are active in target "
                f"{self.target!r} and in {others}; need overlapping users (check user ids match across domains)"
            )
        rng = np.random.default_rng(self.seed)
        order = rng.permutation(overlap)
        n_test = max(1, int(round(self.test_fraction * len(overlap))))
        n_valid = int(round(self.valid_fraction * len(overlap)))
        test_users = np.sort(order[:n_test])
        valid_users = np.sort(order[n_test : n_test + n_valid])
        inter = target.interactions
        users = inter["user"].to_numpy()
        held = np.isin(users, np.concatenate([test_users, valid_users]))
        is_test = np.isin(users, test_users)
        test = GroundTruth.from_pairs(users[is_test], inter["item"].to_numpy()[is_test])
        is_valid = held & ~is_test
        valid = GroundTruth.from_pairs(users[is_valid], inter["item"].to_numpy()[is_valid])
        domains = dict(data.domains)
        domains[self.target] = type(target)(
            name=target.name, interactions=inter[~held].reset_index(drop=True), items=target.items
        )
        params = {"test_fraction": self.test_fraction, "valid_fraction": self.valid_fraction, "seed": self.seed}
        return Split(
            protocol=self.name, target=self.target, train=data.with_domains(domains), valid=valid, test=test,
            params=params, cold=True,
        )


@dataclass(frozen=True)
class Warm:
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
        target = data.domain(self.target)
        inter = target.interactions
        ts = inter["timestamp"].to_numpy(dtype=np.int64)
        if self.cut_time is not None:
            cut = int(self.cut_time)
        else:
            ordered = np.sort(ts)
            cut = int(ordered[min(int(np.floor(self.cut_quantile * len(ordered))), len(ordered) - 1)])
        if cut <= ordered_min(ts):
            raise CrossbenchError(
                f"warm: the time cut {cut} leaves no target interaction of {self.target!r} before it; "
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
                f"warm: no user of {self.target!r} has target history before the cut {cut} and a new item after it; "
                "lower cut_quantile or cut_time"
            )
        domains = {}
        for name, dom in data.domains.items():
            frame = dom.interactions
            if name == self.target:
                keep = np.zeros(len(frame), dtype=bool)
                keep[order[train_mask]] = True
            else:
                keep = frame["timestamp"].to_numpy(dtype=np.int64) < cut
            domains[name] = type(dom)(name=dom.name, interactions=frame[keep].reset_index(drop=True), items=dom.items)
        params = {"cut_quantile": self.cut_quantile, "cut_time": cut}
        return Split(
            protocol=self.name, target=self.target, train=data.with_domains(domains), valid=valid, test=test,
            params=params, cut_time=cut,
        )


def ordered_min(values: np.ndarray) -> int:
    return int(values.min()) if len(values) else 0


PROTOCOLS: dict[str, type] = {"cold-start": ColdStart, "warm": Warm}


def make_protocol(name: str, *, target: str, seed: int, **params: object) -> ColdStart | Warm:
    """The protocol called ``name`` for one ``target`` domain; unknown names or parameters are errors."""
    if name not in PROTOCOLS:
        raise CrossbenchError(unknown_name_message("protocol", name, PROTOCOLS))
    cls = PROTOCOLS[name]
    fields = {f.name for f in dataclasses.fields(cls)} - {"target", "seed"}
    for key in params:
        if key not in fields:
            near = closest(key, fields)
            hint = f"; did you mean {', '.join(map(repr, near))}?" if near else ""
            raise CrossbenchError(f"protocol {name!r} has no parameter {key!r}{hint} (valid: {', '.join(sorted(fields))})")
    return cls(target=target, seed=seed, **params)  # type: ignore[no-any-return]


def resolve_targets(data: CrossDomainData, targets: str | Sequence[str] | None) -> list[str]:
    """Target domains: ``None`` -> the dataset's default (else its last domain); ``"all"`` -> every
    domain in turn (dual/multi-target); otherwise the names given (comma-separated or a list)."""
    if targets is None:
        default = data.meta.get("default_target")
        return [str(default) if default in data.domains else data.domain_names[-1]]
    names = [t.strip() for t in targets.split(",")] if isinstance(targets, str) else [str(t) for t in targets]
    if names == ["all"]:
        return data.domain_names
    for t in names:
        data.domain(t)
    return names
