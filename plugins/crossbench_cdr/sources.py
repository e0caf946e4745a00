"""The two sides of a two-domain model, read from a split's training data only.

CMF, SSCDR and CoNet are two-domain models (a source and a target). On a dataset with more
domains, :func:`two_sides` reads every non-target domain as one source domain: their
catalogues are placed side by side (domain after domain, in the dataset's order), so a
source item index is ``offset[d] + item``. ``source="<name>"`` keeps one domain instead.

:class:`Side` holds one side's training pairs (and ratings, when the data has them) and each
user's items as CSR, which the models use for negatives, paired samples and neighbourhoods.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from crossbench.data.protocols import FitSplit
from crossbench.errors import CrossbenchError, unknown_name_message


@dataclass(frozen=True)
class Side:
    """One side's training interactions: ``users[k]`` took ``items[k]`` (``ratings[k]`` or ``None``)."""

    name: str
    domains: tuple[str, ...]
    n_items: int
    users: np.ndarray
    items: np.ndarray
    ratings: np.ndarray | None
    #: CSR of each user's items: user ``u`` took ``csr_items[indptr[u]:indptr[u + 1]]``
    indptr: np.ndarray
    csr_items: np.ndarray

    def counts(self) -> np.ndarray:
        """Training interactions per user ``[n_users]``."""
        return np.diff(self.indptr)

    def sample_own(self, users: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """One of each user's items, uniformly (``item``, ``has``); ``has`` is False (item 0) for users with none."""
        indptr = torch.as_tensor(self.indptr, device=users.device)
        start, count = indptr[users], indptr[users + 1] - indptr[users]
        r = torch.rand(len(users), generator=generator, device=users.device)
        pos = start + (r * count).long().clamp(max=(count - 1).clamp(min=0))
        csr = torch.as_tensor(self.csr_items, device=users.device)
        has = count > 0
        item = torch.where(has, csr[pos.clamp(max=max(len(csr) - 1, 0))], torch.zeros_like(pos))
        return item, has


def _csr(users: np.ndarray, items: np.ndarray, n_users: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.lexsort((items, users))
    indptr = np.concatenate([[0], np.cumsum(np.bincount(users, minlength=n_users))]).astype(np.int64)
    return indptr, items[order].astype(np.int64)


def _side(split: FitSplit, name: str, domains: Sequence[str]) -> Side:
    users: list[np.ndarray] = []
    items: list[np.ndarray] = []
    ratings: list[np.ndarray | None] = []
    offset = 0
    for d in domains:
        inter = split.train.domain(d).interactions
        users.append(inter["user"].to_numpy().astype(np.int64))
        items.append(inter["item"].to_numpy().astype(np.int64) + offset)
        ratings.append(inter["rating"].to_numpy(dtype=np.float32) if "rating" in inter.columns else None)
        offset += split.train.domain(d).n_items
    u, i = np.concatenate(users), np.concatenate(items)
    given = [x for x in ratings if x is not None]
    r = np.concatenate(given) if len(given) == len(ratings) else None
    indptr, csr_items = _csr(u, i, split.train.n_users)
    return Side(name=name, domains=tuple(domains), n_items=offset, users=u, items=i, ratings=r, indptr=indptr, csr_items=csr_items)


def two_sides(split: FitSplit, source: str | None, *, model: str) -> tuple[Side, Side]:
    """(source side, target side) of ``split``; ``source=None``: every non-target domain as one source."""
    others = [d for d in split.train.domain_names if d != split.target]
    if source is None:
        if not others:
            raise CrossbenchError(f"model {model!r} needs a source domain besides the target {split.target!r}; the data has only {split.train.domain_names}")
        chosen = others
    elif source in others:
        chosen = [source]
    else:
        raise CrossbenchError(f"model {model!r}: source " + unknown_name_message("domain", source, others))
    return _side(split, "source", chosen), _side(split, "target", [split.target])


def rated(side: Side, *, model: str) -> np.ndarray:
    """The side's ratings, or an error saying the objective needs ratings."""
    if side.ratings is None:
        raise CrossbenchError(
            f"model {model!r}: objective 'rating' needs ratings in every {side.name} domain {list(side.domains)}; "
            "use objective='ranking' or a dataset with ratings"
        )
    return side.ratings
