"""New items: target items known by their text before anyone has taken them.

A seeded share of the target's items (those with at least one interaction) is held out with
every interaction of every user: ``item_fraction`` of them are the test's new items and a
disjoint ``valid_item_fraction`` the validation's new items. Training keeps every other target
interaction and every other domain, so the item table still lists the new items (with their
text) but no training interaction involves them; a model that learns item vectors from text can
score them, an ID-only model cannot (``cold_items()``).

Users: among the users active in the target and in another domain, a seeded ``valid_fraction``
are validation users and the rest test users. Users stay warm: their target interactions with
the old items remain in training (and are masked at evaluation), so every unmasked item a test
user is ranked on is one they did not take among the old items, or a new item. The ground truth
of a test user is their interactions with the test's new items; that of a validation user with
the validation's new items. Test and validation share neither users nor new items, so no test
user and no test new item is read by model selection (early stopping, tuning).

``candidates="new"`` (the default, the cold-item setting of the item cold-start literature): a
test user's ranking holds the test's new items only, a validation user's the validation's new
items only, so the table measures how well a model orders items nobody has taken yet. During
training the new items are in the catalogue with no interaction, so a model trained with a
softmax over the catalogue learns them as negatives and would rank every old item above them;
ranking them among themselves keeps that artefact out of the numbers. ``candidates="all"``
ranks the whole catalogue (old items too) for validation and test users alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from crossbench.data.protocols import GroundTruth, Protocol, Split, pair_view
from crossbench.errors import CrossbenchError

if TYPE_CHECKING:
    from crossbench.data.model import CrossDomainData

#: One line of meaning per hyperparameter (``crossbench show new-items``).
NEW_ITEMS_MEANINGS = {
    "item_fraction": "share of the target items with interactions held out, with all their interactions, as the test's new items",
    "valid_item_fraction": "share of those items, disjoint from the test's, held out as the validation's new items",
    "valid_fraction": "share of the users active in the target and another domain that are validation users (the rest: test users)",
    "candidates": "items ranked for a test (validation) user: 'new' = the test's (validation's) new items only, 'all' = the whole catalogue",
}
#: what ``candidates`` may be
CANDIDATES = ("new", "all")


@dataclass(frozen=True)
class NewItems(Protocol):
    """Held-out target items joining the catalogue with their text only (see the module docstring)."""

    target: str
    item_fraction: float = 0.2
    valid_item_fraction: float = 0.05
    valid_fraction: float = 0.1
    candidates: str = "new"
    seed: int = 0

    name = "new-items"

    def __post_init__(self) -> None:
        if not 0 < self.item_fraction < 1 or not 0 < self.valid_item_fraction < 1 or self.item_fraction + self.valid_item_fraction >= 1:
            raise CrossbenchError(
                f"{self.name}: item_fraction and valid_item_fraction must lie in (0, 1) with a sum below 1 so that old items "
                f"stay in training, got {self.item_fraction} and {self.valid_item_fraction}"
            )
        if not 0 < self.valid_fraction < 1:
            raise CrossbenchError(f"{self.name}: valid_fraction must lie in (0, 1), got {self.valid_fraction}")
        if self.candidates not in CANDIDATES:
            raise CrossbenchError(f"{self.name}: candidates must be one of {', '.join(CANDIDATES)}, got {self.candidates!r}")

    def split(self, data: CrossDomainData) -> Split:
        data, name, source = pair_view(data, self.target)
        target = data.domain(name)
        others = [d for d in data.domain_names if d != name]
        if not others:
            raise CrossbenchError(f"{self.name} needs a source domain besides {name!r}; dataset {data.name!r} has only one")
        inter = target.interactions
        users = inter["user"].to_numpy(dtype=np.int64)
        items = inter["item"].to_numpy(dtype=np.int64)
        rng = np.random.default_rng(self.seed)
        active = np.unique(items)
        order = rng.permutation(active)
        n_test = int(round(self.item_fraction * len(active)))
        n_valid = int(round(self.valid_item_fraction * len(active)))
        if n_test < 1 or n_valid < 1 or n_test + n_valid >= len(active):
            raise CrossbenchError(
                f"{self.name}: target {name!r} of dataset {data.name!r} has {len(active)} items with interactions; "
                f"item_fraction {self.item_fraction} and valid_item_fraction {self.valid_item_fraction} must each hold out "
                "at least one item and leave one in training"
            )
        test_items, valid_items = np.sort(order[:n_test]), np.sort(order[n_test : n_test + n_valid])
        source_users = np.unique(np.concatenate([data.domain(d).users() for d in others]))
        overlap = rng.permutation(np.intersect1d(target.users(), source_users))
        n_valid_users = int(round(self.valid_fraction * len(overlap)))
        valid_users, test_users = np.sort(overlap[:n_valid_users]), np.sort(overlap[n_valid_users:])
        is_test = np.isin(items, test_items) & np.isin(users, test_users)
        is_valid = np.isin(items, valid_items) & np.isin(users, valid_users)
        test, valid = (GroundTruth.from_pairs(users[m], items[m]) for m in (is_test, is_valid))
        if test.n_users == 0 or valid.n_users == 0:
            raise CrossbenchError(
                f"{self.name}: no {'test' if test.n_users == 0 else 'validation'} user of dataset {data.name!r} took a new "
                f"item of target {name!r}; raise item_fraction, valid_item_fraction or valid_fraction"
            )
        held = np.union1d(test_items, valid_items)
        domains = dict(data.domains)
        kept = inter[~np.isin(items, held)].reset_index(drop=True)
        domains[name] = type(target)(name=target.name, interactions=kept, items=target.items)
        params = {"item_fraction": self.item_fraction, "valid_item_fraction": self.valid_item_fraction,
                  "valid_fraction": self.valid_fraction, "candidates": self.candidates, "seed": self.seed}
        new = self.candidates == "new"
        return Split(
            protocol=self.name, target=name, train=data.with_domains(domains), valid=valid, test=test, params=params,
            evaluation=self.evaluation(), source=source, held_items=held, valid_candidates=valid_items if new else None,
            test_candidates=test_items if new else None,
        )
