"""Evaluation protocols: how a dataset becomes training data plus held-out ground truth.

The core defines what a split is (:class:`Split`, :class:`FitSplit`, :class:`GroundTruth`) and
what a protocol does (:class:`Protocol`); the protocols themselves (cold-start, warm, ...) are
plugins registered through the ``crossbench_protocols`` hook and built by :func:`make_protocol`.
"""

from __future__ import annotations

import abc
import dataclasses
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from crossbench.data.model import CrossDomainData


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


def train_items(data: CrossDomainData, domain: str) -> GroundTruth:
    """The training items of every user in ``domain``, for masking at evaluation."""
    inter = data.domain(domain).interactions
    return GroundTruth.from_pairs(inter["user"].to_numpy(), inter["item"].to_numpy())


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


class Protocol(abc.ABC):
    """A protocol for one target domain: ``split(data)`` returns the :class:`Split`.

    ``name`` (a class attribute) is the registered name, recorded as :attr:`Split.protocol`.
    A split holds the training data every model may learn from, the validation ground truth
    model selection may read, and the test ground truth only the runner hands to the
    evaluator; the leakage audit (:mod:`crossbench.data.audit`) checks it afterwards.
    """

    name: str = ""

    @abc.abstractmethod
    def split(self, data: CrossDomainData) -> Split:
        """Split ``data``; raise :class:`CrossbenchError` naming the problem when it cannot be split."""


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
