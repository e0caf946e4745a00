"""UniCDR's inputs drawn from a split: static training samples and the users' scoring contexts.

Item ``i`` of a domain is row ``i + 1`` of that domain's item table; row 0 pads a context.
A *context* is a fixed-length row of a user's items of one domain (row ids, padded with 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from crossbench.data.protocols import FitSplit


@dataclass(frozen=True)
class DomainItems:
    """One domain's distinct training pairs (``users[k]`` took ``items[k]``) and each user's items as CSR."""

    name: str
    n_items: int
    users: np.ndarray
    items: np.ndarray
    indptr: np.ndarray
    csr_items: np.ndarray

    def items_of(self, user: int) -> np.ndarray:
        return self.csr_items[self.indptr[user] : self.indptr[user + 1]]

    def catalogue(self) -> np.ndarray:
        """The items that occur in training (the authors' negatives are drawn among these), sorted."""
        return np.unique(self.items)


def domain_items(split: FitSplit, name: str) -> DomainItems:
    inter = split.train.domain(name).interactions
    pairs = np.stack([inter["user"].to_numpy(np.int64), inter["item"].to_numpy(np.int64)], 1)
    _, first = np.unique(pairs, axis=0, return_index=True)
    pairs = pairs[np.sort(first)]
    users, items = pairs[:, 0], pairs[:, 1]
    order = np.lexsort((items, users))
    indptr = np.concatenate([[0], np.cumsum(np.bincount(users, minlength=split.train.n_users))]).astype(np.int64)
    return DomainItems(name, split.train.domain(name).n_items, users, items, indptr, items[order])


def subsets(dom: DomainItems, row_users: np.ndarray, rng: np.random.Generator, *, length: int, keep: float) -> np.ndarray:
    """``[len(row_users), length]``: for each row, ``min(length, int(n * keep))`` of its user's ``n`` items
    drawn without repeats (row ids), then padding."""
    out = np.zeros((len(row_users), length), np.int64)
    order = np.argsort(row_users, kind="stable")
    bounds = np.flatnonzero(np.diff(row_users[order])) + 1
    for rows in np.split(order, bounds) if len(order) else []:
        items = dom.items_of(int(row_users[rows[0]]))
        size = min(length, int(len(items) * keep))
        if size:
            pick = np.argsort(rng.random((len(rows), len(items))), 1)[:, :size]
            out[rows, :size] = items[pick] + 1
    return out


def without(context: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``context`` with each row's item ``rows[k]`` taken out (the rest moved left, padding at the end)."""
    kept = np.where(context == rows[:, None], 0, context)
    order = np.argsort(kept == 0, axis=1, kind="stable")
    return np.take_along_axis(kept, order, 1)


def negatives_of(dom: DomainItems, users: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """``[len(users), count]`` row ids, each uniform over the domain's training items the user did not train on
    (over all of them for a user who trained on every one)."""
    pool = dom.catalogue()
    keys = np.sort(dom.users * (dom.n_items + 1) + dom.items)
    draws = pool[rng.integers(0, len(pool), (len(users), count))]
    full = np.diff(dom.indptr)[users] >= len(pool)
    for _ in range(1000):
        k = users[:, None] * (dom.n_items + 1) + draws
        pos = np.searchsorted(keys, k).clip(max=len(keys) - 1)
        bad = (keys[pos] == k) & ~full[:, None]
        if not bad.any():
            break
        draws[bad] = pool[rng.integers(0, len(pool), int(bad.sum()))]
    return draws + 1


def static_samples(domains: list[DomainItems], d: int, rng: np.random.Generator, *, negatives: int, length: int,
                   mask_rate: float, device: torch.device) -> dict[str, Any]:
    """Domain ``d``'s training samples, one per distinct training pair: ``user``, ``item`` (row id), ``negatives``
    ``[n, negatives]``, ``context [n, length]`` (own items, the positive removed) and ``others`` (one context per
    domain; the own domain's all padding: the domain mask)."""
    dom = domains[d]
    keep = 1.0 - mask_rate
    context = without(subsets(dom, dom.users, rng, length=length, keep=keep), dom.items + 1)
    others = [np.zeros((len(dom.users), length), np.int64) if k == d else subsets(o, dom.users, rng, length=length, keep=keep)
              for k, o in enumerate(domains)]
    neg = negatives_of(dom, dom.users, negatives, rng)

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(a, device=device)

    return {"user": t(dom.users), "item": t(dom.items + 1), "negatives": t(neg), "context": t(context),
            "others": [t(o) for o in others]}


def eval_contexts(domains: list[DomainItems], users: np.ndarray, *, length: int, seed: int) -> list[torch.Tensor]:
    """Per domain ``[len(users), length]``: up to ``length`` of each user's training items there, a random sample
    fixed by ``seed`` and the user (so every scoring call sees the same one), then padding."""
    out = [np.zeros((len(users), length), np.int64) for _ in domains]
    for j, u in enumerate(users.tolist()):
        rng = np.random.default_rng([seed, u])
        for k, dom in enumerate(domains):
            items = dom.items_of(u)
            if len(items) > length:
                items = items[np.sort(rng.choice(len(items), length, replace=False))]
            out[k][j, : len(items)] = items + 1
    return [torch.as_tensor(o) for o in out]
