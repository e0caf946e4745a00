"""The neural component interfaces: item encoders, user encoders, fusions and scorers.

They are ``torch.nn.Module`` subclasses, so this module imports torch; everything else a
plugin needs to register components (specs, search-space parameters, contexts) lives in
:mod:`crossbench.plugin.interfaces`, which does not, so that listing plugins stays fast. The four
classes are also importable from :mod:`crossbench.plugin.interfaces` (loaded on first use).
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

__all__ = ["Fusion", "ItemEncoder", "ItemLevelFusion", "Scorer", "UserEncoder"]


class ItemEncoder(nn.Module, abc.ABC):
    """Maps item indices of one domain to vectors of size ``dim``."""

    dim: int
    n_items: int

    @abc.abstractmethod
    def forward(self, items: torch.Tensor) -> torch.Tensor:
        """``items``: int64 tensor of any shape -> float tensor of that shape plus ``[dim]``."""

    def inputs(self) -> dict[str, Any] | None:
        """What the encoder read besides item ids, for run records (``None``: nothing to say).

        Text encoders say which text was encoded: the recipe, a sample, how many texts were
        encoded by the language model and how many served from the cache, and the model's
        weights hash.
        """
        return None

    def cold_items(self) -> bool:
        """Whether an item's vector comes from more than its ID (e.g. its text), so that an item with no
        training interaction still gets a learned vector (default ``False``)."""
        return False

    def all_items(self) -> torch.Tensor:
        """Vectors of every item of the domain, ``[n_items, dim]``."""
        return self.block_items(0, int(self.n_items))

    def block_items(self, start: int, stop: int) -> torch.Tensor:
        """Vectors of items ``start`` to ``stop - 1``, ``[stop - start, dim]``: rows of :meth:`all_items`,
        computed for those items alone (data-parallel training encodes one block of the catalogue per rank)."""
        device = next(self.parameters()).device if any(True for _ in self.parameters()) else None
        return self.forward(torch.arange(start, stop, device=device))


class UserEncoder(nn.Module, abc.ABC):
    """Encodes a user's history in one domain into one vector."""

    @abc.abstractmethod
    def forward(self, users: torch.Tensor, history: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``users`` ``[B]``; ``history`` ``[B, L, dim]`` item vectors, oldest first;
        ``mask`` ``[B, L]`` true where a position holds an item. Returns ``[B, dim]``."""

    def forward_all(self, users: torch.Tensor, history: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The state after every position at once, for all-position (causal) training.

        Returns ``[B, L, dim]`` whose position ``j`` equals ``forward`` on the history up to
        and including position ``j`` (zeros where no item is at or before ``j``). The trainer
        calls it with left-padded histories only: positions without an item all come before
        the positions with one. This default calls ``forward`` once per position; sequence
        encoders override it with one pass over the sequence.
        """
        states = [self.forward(users, history[:, : j + 1], mask[:, : j + 1]) for j in range(history.shape[1])]
        if not states:
            return history.new_zeros(history.shape)
        return torch.stack(states, dim=1)


class Fusion(nn.Module, abc.ABC):
    """Combines per-domain user vectors into one user vector for the target domain."""

    #: False for fusions that only ever read the target domain (the trainer then trains
    #: on target-domain interactions alone).
    cross_domain: bool = True
    #: True for fusions that attend over a user's individual items: ``forward`` is then also
    #: called with ``items`` and ``item_masks`` (see :meth:`forward`). Fusions that leave it
    #: False are called with the three positional arguments only.
    item_level: bool = False
    #: False for item-level fusions that read the source domains through ``items`` only: the
    #: trainer then skips encoding source histories and passes zero vectors for them.
    pooled_sources: bool = True
    #: True for fusions whose ``forward`` accepts one target state per position (see
    #: :meth:`forward`); the trainer otherwise gathers one row per predicted position.
    positions: bool = False

    @abc.abstractmethod
    def forward(
        self,
        vectors: Mapping[str, torch.Tensor],
        present: Mapping[str, torch.Tensor],
        target: str,
    ) -> torch.Tensor:
        """``vectors[d]`` ``[B, dim]`` per domain; ``present[d]`` ``[B]`` bool, true where the
        user has history in ``d``. Returns the ``[B, dim]`` user vector for ``target``.

        An ``item_level`` fusion is called as ``forward(vectors, present, target, items=...,
        item_masks=...)``: ``items[d]`` ``[B, L_d, dim]`` holds the vectors of the user's
        individual items in ``d`` (oldest first, left-padded) and ``item_masks[d]`` ``[B, L_d]``
        is true where a position holds an item the fusion may read (false for padding, for the
        item being predicted, and for a history hidden in training). A user with no history
        anywhere has every mask false and every ``present`` false; the fusion must still return
        a finite vector for them.

        All-position training: a fusion that declares ``positions = True`` may receive
        ``vectors[target]`` as ``[B, P, dim]`` with ``present[target]`` ``[B, P]``: the target
        state before each of the ``P`` positions of the target history (position ``j`` has seen
        the target items before ``j`` only). An item-level fusion then reads target item ``k``
        for position ``j`` only where ``k < j``; source-domain items are visible at every
        position. It returns ``[B, P, dim]``. Fusions without ``positions`` always receive
        ``[B, dim]`` (the trainer gathers one row per predicted position).
        """


class ItemLevelFusion(Fusion):
    """A fusion that attends over a user's individual items in each domain, not only over one
    pooled vector per domain: the trainer calls it with ``items`` and ``item_masks`` as well
    (see :meth:`Fusion.forward` for their shapes and the masking rules).

    Subclass it instead of setting ``item_level = True`` on a :class:`Fusion`; set
    ``pooled_sources = False`` where the source domains are read through ``items`` only.
    """

    item_level = True

    @abc.abstractmethod
    def forward(
        self,
        vectors: Mapping[str, torch.Tensor],
        present: Mapping[str, torch.Tensor],
        target: str,
        items: Mapping[str, torch.Tensor] | None = None,
        item_masks: Mapping[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """As :meth:`Fusion.forward`, with ``items[d]`` ``[B, L_d, dim]`` and ``item_masks[d]``
        ``[B, L_d]`` always given by the trainer."""


class Scorer(nn.Module, abc.ABC):
    """Scores users against items."""

    @abc.abstractmethod
    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Pairwise: ``users`` ``[B, dim]`` and ``items`` ``[B, ..., dim]`` -> ``[B, ...]``."""

    def score_all(self, users: torch.Tensor, items: torch.Tensor, *, out: torch.Tensor | None = None) -> torch.Tensor:
        """Full ranking: ``users`` ``[B, dim]`` against ``items`` ``[N, dim]`` -> ``[B, N]``.

        ``out``, when given, is a float32 ``[B, N]`` tensor the scores may be written into
        (and returned); a scorer is free to ignore it and return a new tensor.
        """
        return self.forward(users[:, None, :].expand(-1, items.shape[0], -1), items[None].expand(users.shape[0], -1, -1))
