"""Leave-one-out on overlapping users: the protocol of DisenCDR, CDRIB, C2DSR (999 sampled
negatives) and Tri-CDR (100), and the same split under full ranking.

``loo`` ranks every target item; ``loo-999`` and ``loo-100`` are the papers' settings: the
same split, each test item ranked among 999 (100) negatives drawn uniformly, per user, from
the target items that user never interacted with (training, validation or test), fixed by the
run's seed and so the same for every model of a seed
(:func:`crossbench.evaluate.sampled.protocol_negatives`). As in DisenCDR's and CDRIB's code,
each negative is an independent draw (negatives may repeat), so a catalogue of fewer than
999 items, such as a MovieLens-100K genre group, can still be evaluated this way. Unlike that
code, the user's test and validation items are never drawn (it excludes training items only).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING

import numpy as np

from crossbench.data.protocols import Evaluation, GroundTruth, Protocol, Split, pair_view
from crossbench.errors import CrossbenchError

if TYPE_CHECKING:
    from crossbench.data.model import CrossDomainData

#: which users of the target get a test item
USER_SETS = ("overlap", "all")


@dataclass(frozen=True)
class LeaveOneOut(Protocol):
    """Leave-one-out per user in the target domain, test users drawn from the overlapping users.

    A user active in the target and in another domain (``users="overlap"``, the papers'
    setting; ``"all"``: every target user) with at least ``min_items`` distinct target items
    has their last target item (by time, ties by item index) as test item and the one before
    it as validation item; every interaction with either leaves training. All other target
    interactions, every other domain and every user not shared across domains stay in
    training (the model sees them). ``n_negatives`` > 0 evaluates by sampled negatives (see
    the module docstring); 0 ranks the whole catalogue. The split itself does not depend on
    ``seed``; the negatives do.
    """

    target: str
    n_negatives: int = 0
    users: str = "overlap"
    min_items: int = 3
    seed: int = 0

    name = "loo"

    def __post_init__(self) -> None:
        if self.n_negatives < 0:
            raise CrossbenchError(f"{self.name}: n_negatives must be 0 (full ranking) or positive, got {self.n_negatives}")
        if self.users not in USER_SETS:
            raise CrossbenchError(f"{self.name}: users must be one of {', '.join(USER_SETS)}, got {self.users!r}")
        if self.min_items < 3:
            raise CrossbenchError(f"{self.name}: min_items must be at least 3 (test, validation and one training item), got {self.min_items}")

    def evaluation(self) -> Evaluation:
        return Evaluation("sampled", self.n_negatives, replacement=True) if self.n_negatives else Evaluation()

    def split(self, data: CrossDomainData) -> Split:
        data, name, source = pair_view(data, self.target)
        target = data.domain(name)
        inter = target.interactions
        users = inter["user"].to_numpy(dtype=np.int64)
        items = inter["item"].to_numpy(dtype=np.int64)
        times = inter["timestamp"].to_numpy(dtype=np.int64)
        eligible = target.users()
        if self.users == "overlap":
            others = [d for d in data.domain_names if d != name]
            if not others:
                raise CrossbenchError(f"{self.name} needs a source domain besides {name!r}; dataset {data.name!r} has only one")
            eligible = np.intersect1d(eligible, np.unique(np.concatenate([data.domain(d).users() for d in others])))
        # each (user, item) once, at its last time; per user the items in the order of those times
        keys = users * target.n_items + items
        order = np.lexsort((times, keys))
        last = np.r_[keys[order][1:] != keys[order][:-1], True]
        pu, pi, pt = users[order][last], items[order][last], times[order][last]
        by_time = np.lexsort((pi, pt, pu))
        pu, pi = pu[by_time], pi[by_time]
        counts = np.bincount(pu, minlength=data.n_users)
        ends = np.flatnonzero(np.r_[pu[1:] != pu[:-1], True]) if len(pu) else np.zeros(0, np.int64)
        chosen = ends[np.isin(pu[ends], eligible) & (counts[pu[ends]] >= self.min_items)]
        if len(chosen) == 0:
            raise CrossbenchError(
                f"{self.name}: no user of dataset {data.name!r} is eligible in target {name!r} ({self.users} users with at "
                f"least {self.min_items} distinct target items); lower min_items or check that user ids match across domains"
            )
        test = GroundTruth.from_pairs(pu[chosen], pi[chosen])
        valid = GroundTruth.from_pairs(pu[chosen - 1], pi[chosen - 1])
        held = np.isin(keys, np.concatenate([pu[chosen] * target.n_items + pi[chosen], pu[chosen - 1] * target.n_items + pi[chosen - 1]]))
        domains = dict(data.domains)
        domains[name] = type(target)(name=target.name, interactions=inter[~held].reset_index(drop=True), items=target.items)
        # the parameters set away from their defaults (as an experiment gives them), and the seed
        settable = {f.name: f for f in fields(self) if f.init and f.name not in ("target", "seed")}
        params: dict[str, object] = {k: getattr(self, k) for k, f in settable.items() if getattr(self, k) != f.default}
        params["seed"] = self.seed
        return Split(
            protocol=self.name, target=name, train=data.with_domains(domains), valid=valid, test=test, params=params,
            evaluation=self.evaluation(), source=source,
        )


@dataclass(frozen=True)
class Loo999(LeaveOneOut):
    """DisenCDR, CDRIB and C2DSR: leave-one-out, each test item among 999 uniform negatives."""

    n_negatives: int = field(default=999, init=False)
    name = "loo-999"


@dataclass(frozen=True)
class Loo100(LeaveOneOut):
    """Tri-CDR: leave-one-out, each test item among 100 uniform negatives."""

    n_negatives: int = field(default=100, init=False)
    name = "loo-100"

