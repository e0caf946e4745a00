"""Evaluation protocols: how a dataset becomes training data plus held-out ground truth."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from crossbench.data.model import CrossDomainData
from crossbench.errors import CrossbenchError


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
class Split:
    """Training data and held-out validation and test ground truth for one target domain."""

    protocol: str
    target: str
    train: CrossDomainData
    valid: GroundTruth
    test: GroundTruth
    params: Mapping[str, object] = field(default_factory=dict)

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

    def split(self, data: CrossDomainData) -> Split:
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
        return Split(protocol=self.name, target=self.target, train=data.with_domains(domains), valid=valid, test=test, params=params)
