"""Evaluation protocols: how a dataset becomes training data plus held-out ground truth.

The core defines what a split is (:class:`Split`, :class:`FitSplit`, :class:`GroundTruth`) and
what a protocol does (:class:`Protocol`); the protocols themselves (cold-start, warm, ...) are
plugins registered through the ``crossbench_protocols`` hook and built by :func:`make_protocol`.
A protocol also fixes how its test users are evaluated (:class:`Evaluation`: full ranking,
sampled negatives as a paper draws them, or rating error), so that one protocol name states a
paper's whole setting. A target may be a domain pair ``SOURCE>TARGET`` (:func:`pair_view`).
"""

from __future__ import annotations

import abc
import dataclasses
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from crossbench.errors import CrossbenchError, unknown_name_message

if TYPE_CHECKING:
    from crossbench.data.model import CrossDomainData


@dataclass(frozen=True)
class GroundTruth:
    """Held-out items per user, as CSR: user ``users[j]`` has items ``items[indptr[j]:indptr[j+1]]``.

    ``values`` (rating tasks only) holds the held-out rating of each entry, aligned with ``items``.
    """

    users: np.ndarray
    indptr: np.ndarray
    items: np.ndarray
    values: np.ndarray | None = None

    @property
    def n_users(self) -> int:
        return len(self.users)

    def items_of(self, j: int) -> np.ndarray:
        return self.items[self.indptr[j] : self.indptr[j + 1]]

    @classmethod
    def from_pairs(cls, users: np.ndarray, items: np.ndarray, values: np.ndarray | None = None) -> GroundTruth:
        """Group (user, item) pairs; users sorted, each user's items sorted and unique.

        With ``values`` (one rating per pair), each kept pair holds the mean of its pair's values
        (a user who rated an item twice is judged on the mean of the two ratings).
        """
        empty_values = None if values is None else np.zeros(0, np.float64)
        if len(users) == 0:
            return cls(np.zeros(0, np.int64), np.zeros(1, np.int64), np.zeros(0, np.int64), empty_values)
        pairs, inverse = np.unique(np.stack([users.astype(np.int64), items.astype(np.int64)], axis=1), axis=0,
                                   return_inverse=True)
        u, counts = np.unique(pairs[:, 0], return_counts=True)
        indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        kept = None
        if values is not None:
            inverse = inverse.reshape(-1)
            sums = np.bincount(inverse, weights=np.asarray(values, dtype=np.float64), minlength=len(pairs))
            kept = sums / np.bincount(inverse, minlength=len(pairs))
        return cls(u, indptr, pairs[:, 1].copy(), kept)

    def digest(self, h: hashlib._Hash) -> None:
        for a in (self.users, self.indptr, self.items):
            h.update(np.ascontiguousarray(a, dtype=np.int64).tobytes())
        if self.values is not None:
            h.update(np.ascontiguousarray(self.values, dtype=np.float64).tobytes())


def train_items(data: CrossDomainData, domain: str) -> GroundTruth:
    """The training items of every user in ``domain``, for masking at evaluation."""
    inter = data.domain(domain).interactions
    return GroundTruth.from_pairs(inter["user"].to_numpy(), inter["item"].to_numpy())


def _exclude(split: FitSplit, truth: GroundTruth, candidates: np.ndarray | None) -> GroundTruth:
    exclude = train_items(split.train, split.target)
    if candidates is None or truth.n_users == 0:
        return exclude
    others = np.setdiff1d(np.arange(split.train.domain(split.target).n_items), candidates)
    users = np.concatenate([np.repeat(exclude.users, np.diff(exclude.indptr)), np.repeat(truth.users, len(others))])
    items = np.concatenate([exclude.items, np.tile(others, truth.n_users)])
    return GroundTruth.from_pairs(users, items)


def exclude_for_validation(split: FitSplit) -> GroundTruth:
    """Items never ranked for the validation users: their training items, and every item outside
    :attr:`FitSplit.valid_candidates` when the protocol ranks a candidate set only."""
    return _exclude(split, split.valid, split.valid_candidates)


def exclude_for_test(split: Split) -> GroundTruth:
    """Items never ranked for the test users: their training items, and every item outside
    :attr:`Split.test_candidates` when the protocol ranks a candidate set only."""
    return _exclude(split, split.test, split.test_candidates)


#: How a split's test users are evaluated: every item ranked, sampled negatives, or rating error.
EVALUATION_KINDS = ("full", "sampled", "rating")


@dataclass(frozen=True)
class Evaluation:
    """How a protocol evaluates its test users; a paper protocol fixes it, so its name says it all.

    ``full``: every target item ranked (training items masked). ``sampled``: each held-out item
    ranked among ``n_negatives`` negatives drawn per user by ``strategy`` from the items the user
    never interacted with in the target domain, fixed per seed. ``rating``: MAE and RMSE of
    the predicted ratings of the held-out (user, item) pairs; only rating models run.
    """

    kind: str = "full"
    n_negatives: int = 0
    strategy: str = "uniform"
    #: sampled negatives drawn independently, so they may repeat (as the papers' code draws them)
    replacement: bool = False

    def __post_init__(self) -> None:
        if self.kind not in EVALUATION_KINDS:
            raise CrossbenchError(unknown_name_message("evaluation kind", self.kind, EVALUATION_KINDS))
        if (self.kind == "sampled") != (self.n_negatives > 0):
            raise CrossbenchError(f"evaluation {self.kind!r}: n_negatives must be positive exactly when sampled, got {self.n_negatives}")

    @property
    def label(self) -> str:
        """What tables and records say: ``full ranking``, ``sampled: 999 uniform negatives`` or ``rating``."""
        if self.kind == "sampled":
            return f"sampled: {self.n_negatives} {self.strategy} negatives"
        return "full ranking" if self.kind == "full" else "rating"


FULL_RANKING = Evaluation()


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
    #: How the test users are evaluated (the protocol decides; see :class:`Evaluation`).
    evaluation: Evaluation = FULL_RANKING
    #: The source domain of a domain pair (``"comedy>drama"``): training holds these two domains only.
    source: str | None = None
    #: The only target items ranked for the validation users (new-items protocols: the validation's
    #: new items); ``None``: every item. See :func:`exclude_for_validation`.
    valid_candidates: np.ndarray | None = field(default=None, compare=False)

    @property
    def label(self) -> str:
        """The target as runs and tables name it: ``"drama"``, or ``"comedy>drama"`` for a domain pair."""
        return f"{self.source}{PAIR_SEP}{self.target}" if self.source else self.target


@dataclass(frozen=True)
class Split(FitSplit):
    """Training data and held-out validation and test ground truth for one target domain."""

    test: GroundTruth = field(kw_only=True)
    #: Target items held out with every interaction of every user (new-items protocols), sorted; ``None``:
    #: none. Not part of :meth:`fit_view`: the audit checks that no interaction with them reaches training.
    held_items: np.ndarray | None = field(default=None, kw_only=True, compare=False)
    #: The only target items ranked for the test users (``None``: every item). See :func:`exclude_for_test`.
    test_candidates: np.ndarray | None = field(default=None, kw_only=True, compare=False)

    def fingerprint(self) -> str:
        """sha256 of the training data, the ground truth and the protocol parameters."""
        h = hashlib.sha256()
        h.update(self.protocol.encode())
        h.update(self.target.encode())
        h.update(repr(sorted(self.params.items())).encode())
        if self.evaluation != FULL_RANKING or self.source:  # unchanged fingerprints for the earlier splits
            h.update(f"{self.evaluation.label}|{self.source}".encode())
        h.update(self.train.fingerprint().encode())
        self.valid.digest(h)
        self.test.digest(h)
        for items in (self.held_items, self.valid_candidates, self.test_candidates):
            if items is not None:
                h.update(b"|" + np.ascontiguousarray(items, dtype=np.int64).tobytes())
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

    def evaluation(self) -> Evaluation:
        """How this protocol's test users are evaluated, known before any data is read (default: full ranking)."""
        return FULL_RANKING


#: Separates the source and the target of a domain pair: ``"comedy>drama"``.
PAIR_SEP = ">"


def parse_target(target: str) -> tuple[str | None, str]:
    """``"drama"`` -> ``(None, "drama")``; a domain pair ``"comedy>drama"`` -> ``("comedy", "drama")``."""
    source, sep, name = target.partition(PAIR_SEP)
    if not sep:
        return None, target.strip()
    if not source.strip() or not name.strip() or PAIR_SEP in name:
        raise CrossbenchError(f"target {target!r}: a domain pair is written SOURCE{PAIR_SEP}TARGET, e.g. 'comedy{PAIR_SEP}drama'")
    return source.strip(), name.strip()


def pair_view(data: CrossDomainData, target: str) -> tuple[CrossDomainData, str, str | None]:
    """``(data, target domain, source)`` for a protocol's ``target``: a domain pair keeps its two domains only
    (every user is kept, so users active in neither are simply absent from both)."""
    source, name = parse_target(target)
    data.domain(name)
    if source is None:
        return data, name, None
    data.domain(source)
    if source == name:
        raise CrossbenchError(f"target {target!r}: the source and the target of a domain pair must differ")
    return data.with_domains({source: data.domains[source], name: data.domains[name]}), name, source


def resolve_targets(data: CrossDomainData, targets: str | Sequence[str] | None) -> list[str]:
    """Target domains: ``None`` -> the dataset's default (else its last domain); ``"all"`` -> every
    domain in turn (dual/multi-target); otherwise the names given (comma-separated or a list).

    A name may be a domain pair ``SOURCE>TARGET`` (e.g. ``"comedy>drama"``): the protocol then
    splits the data of those two domains only, so several pairs of a multi-domain dataset each
    choose their own target.
    """
    if targets is None:
        default = data.meta.get("default_target")
        return [str(default) if default in data.domains else data.domain_names[-1]]
    names = [t.strip() for t in targets.split(",")] if isinstance(targets, str) else [str(t) for t in targets]
    if names == ["all"]:
        return data.domain_names
    for t in names:
        pair_view(data, t)
    return names
