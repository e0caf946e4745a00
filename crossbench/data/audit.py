"""The leakage audit that every split passes before a model sees it.

:func:`audit_split` checks a :class:`Split` and raises :class:`LeakageError` naming the leak
and an example (raw user and item ids):

- ``test-pairs-in-train``: a test (user, item) pair is among the target training interactions;
- ``valid-pairs-in-train``: a validation pair is among the target training interactions;
- ``test-in-selection``: a test pair is in the validation ground truth, or (cold-start) a test
  user is a validation user, so model selection could read test ids;
- ``cold-user-target-in-train``: (cold-start) a test or validation user still has target
  interactions in training;
- ``after-cut-in-train``: (temporal protocols) a training interaction of any domain is at or
  after the time cut;
- ``ground-truth-range``: a ground-truth user or item index is out of range;
- ``cold-users-have-source``: (cold-start) a test or validation user has no training
  interaction in any other domain, so no source history could serve them.
- ``new-items-held-out``: (new-items protocols, :attr:`Split.held_items`) a target training
  interaction involves a held-out item, a ground-truth item is not a held-out item, or the test
  and validation ground truth (or the validation's candidate items) share an item, or they share a user.

Users need not be shared across domains: the report counts the users active in the target only,
in the other domains only, and in both (``users``), held-out users included; users of one domain
only stay in training and are never cold-start test users.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from crossbench.data.protocols import GroundTruth, Split
from crossbench.errors import CrossbenchError


class LeakageError(CrossbenchError):
    """A split leaks held-out information into training or model selection."""

    def __init__(self, check: str, message: str) -> None:
        super().__init__(f"leakage audit failed [{check}]: {message}")
        self.check = check


@dataclass(frozen=True)
class AuditReport:
    """What the audit checked on a split that passed."""

    protocol: str
    target: str
    checks: tuple[str, ...]
    fingerprint: str
    #: users active in both the target and another domain (``shared``), in the target only, in the others only
    users: Mapping[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return {"protocol": self.protocol, "target": self.target, "checks": list(self.checks), "passed": True,
                "fingerprint": self.fingerprint, "users": dict(self.users)}


def user_sharing(split: Split) -> dict[str, int]:
    """How many users are active in the target and another domain, in the target only, in the others only
    (the target's held-out users counted as target users)."""
    train = split.train
    target = np.unique(np.concatenate([train.domain(split.target).users(), split.test.users, split.valid.users]))
    others = [train.domain(d).users() for d in train.domain_names if d != split.target]
    source = np.unique(np.concatenate(others)) if others else np.zeros(0, np.int64)
    shared = np.intersect1d(target, source)
    return {"shared": int(len(shared)), "target_only": int(len(target) - len(shared)), "source_only": int(len(source) - len(shared))}


def _pairs(truth: GroundTruth) -> tuple[np.ndarray, np.ndarray]:
    counts = np.diff(truth.indptr)
    return np.repeat(truth.users, counts).astype(np.int64), truth.items.astype(np.int64)


def _example(split: Split, users: np.ndarray, items: np.ndarray, hit: np.ndarray, n: int = 3) -> str:
    target = split.train.domain(split.target)
    idx = np.flatnonzero(hit)[:n]
    shown = [f"(user {split.train.user_ids[users[k]]!s}, item {target.items['item_id'].iloc[items[k]]!s})" for k in idx]
    return f"{int(hit.sum())} pair(s), e.g. {', '.join(shown)}"


def _cold_checks(split: Split, where: str) -> list[str]:
    """The cold-start checks: every held-out user is shared with a source domain and has no target training."""
    train = split.train
    tr = train.domain(split.target).interactions
    others = [train.domain(d).users() for d in train.domain_names if d != split.target]
    source = np.unique(np.concatenate(others)) if others else np.zeros(0, np.int64)
    for label, truth in (("test", split.test), ("validation", split.valid)):
        alone = np.setdiff1d(truth.users, source)
        if len(alone):
            raise LeakageError(
                "cold-users-have-source",
                f"{where}: {len(alone)} cold {label} user(s) have no training interaction in any other domain "
                f"(e.g. user {train.user_ids[alone[0]]!s}); a cold-start user must be shared with a source domain",
            )
    done = ["cold-users-have-source"]
    train_users = tr["user"].to_numpy(dtype=np.int64)
    for label, truth in (("test", split.test), ("validation", split.valid)):
        leaked = np.intersect1d(truth.users, train_users)
        if len(leaked):
            raise LeakageError(
                "cold-user-target-in-train",
                f"{where}: {len(leaked)} cold {label} user(s) still have target-domain interactions in training "
                f"(e.g. user {train.user_ids[leaked[0]]!s}); all their target interactions must be held out",
            )
    return [*done, "cold-user-target-in-train"]


def _new_item_checks(split: Split, where: str) -> str:
    """No interaction with a held-out item in training; ground truth on held-out items only; test and
    validation apart (no test item or test user can reach model selection)."""
    held = np.asarray(split.held_items, dtype=np.int64)
    tr = split.train.domain(split.target).interactions
    users, items = tr["user"].to_numpy(dtype=np.int64), tr["item"].to_numpy(dtype=np.int64)
    hit = np.isin(items, held)
    if hit.any():
        raise LeakageError("new-items-held-out", f"{where}: training interactions involve held-out new items: "
                                                 f"{_example(split, users, items, hit)}")
    for label, truth in (("test", split.test), ("validation", split.valid)):
        u, i = _pairs(truth)
        old = ~np.isin(i, held)
        if old.any():
            raise LeakageError("new-items-held-out", f"{where}: {label} ground truth holds items that are not new: "
                                                     f"{_example(split, u, i, old)}")
    shared_items = np.intersect1d(split.test.items, split.valid.items)
    shared_users = np.intersect1d(split.test.users, split.valid.users)
    if split.valid_candidates is not None:  # validation ranks its own candidates: never a test item
        shared_items = np.union1d(shared_items, np.intersect1d(split.test.items, split.valid_candidates))
    if len(shared_items) or len(shared_users):
        raise LeakageError("new-items-held-out", f"{where}: the test and validation ground truth share {len(shared_items)} "
                                                 f"new item(s) and {len(shared_users)} user(s); they must be disjoint")
    return "new-items-held-out"


def audit_split(split: Split) -> AuditReport:
    """Check ``split`` for every kind of leak; raise :class:`LeakageError` on the first found."""
    train = split.train
    target = train.domain(split.target)
    n_items = target.n_items
    where = f"{split.protocol} split of {train.name!r}, target {split.target!r}"
    checks = []

    for label, truth in (("test", split.test), ("validation", split.valid)):
        u, i = _pairs(truth)
        if len(u) and (u.min() < 0 or u.max() >= train.n_users or i.min() < 0 or i.max() >= n_items):
            raise LeakageError("ground-truth-range", f"{where}: {label} ground truth has indices out of range")
    checks.append("ground-truth-range")

    tu, ti = _pairs(split.test)
    vu, vi = _pairs(split.valid)
    tr = target.interactions
    train_keys = np.unique(tr["user"].to_numpy(dtype=np.int64) * n_items + tr["item"].to_numpy(dtype=np.int64))
    hit = np.isin(tu * n_items + ti, train_keys)
    if hit.any():
        raise LeakageError(
            "test-pairs-in-train", f"{where}: test pairs are in the training interactions: {_example(split, tu, ti, hit)}"
        )
    checks.append("test-pairs-in-train")
    hit = np.isin(vu * n_items + vi, train_keys)
    if hit.any():
        raise LeakageError(
            "valid-pairs-in-train",
            f"{where}: validation pairs are in the training interactions: {_example(split, vu, vi, hit)}",
        )
    checks.append("valid-pairs-in-train")

    hit = np.isin(tu * n_items + ti, vu * n_items + vi)
    if hit.any():
        raise LeakageError(
            "test-in-selection",
            f"{where}: test pairs are in the validation ground truth that model selection reads: {_example(split, tu, ti, hit)}",
        )
    if split.cold:
        both = np.intersect1d(split.test.users, split.valid.users)
        if len(both):
            raise LeakageError(
                "test-in-selection",
                f"{where}: {len(both)} test user(s) are also validation users, so model selection sees their "
                f"target items (e.g. user {train.user_ids[both[0]]!s})",
            )
    checks.append("test-in-selection")

    if split.cold:
        checks += _cold_checks(split, where)

    if split.held_items is not None:
        checks.append(_new_item_checks(split, where))

    if split.cut_time is not None:
        for name, dom in train.domains.items():
            ts = dom.interactions["timestamp"].to_numpy(dtype=np.int64)
            late = ts >= split.cut_time
            if late.any():
                k = int(np.argmax(late))
                row = dom.interactions.iloc[k]
                raise LeakageError(
                    "after-cut-in-train",
                    f"{where}: {int(late.sum())} training interaction(s) of domain {name!r} are at or after the time cut "
                    f"{split.cut_time} (e.g. user {train.user_ids[int(row['user'])]!s} at {int(row['timestamp'])})",
                )
        checks.append("after-cut-in-train")
    return AuditReport(protocol=split.protocol, target=split.label, checks=tuple(checks), fingerprint=split.fingerprint(),
                       users=user_sharing(split))
