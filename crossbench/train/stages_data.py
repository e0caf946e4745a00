"""Stage data for :mod:`crossbench.train.stages`, built from a split's training data only.

- :func:`domain_pairs`: one domain's ``user``/``item`` (and ``rating``) training rows, optionally
  restricted to some users;
- :func:`overlapping_users`: users with training interactions in both of two domains (in a
  cold-start split the validation and test users have no target training interactions, so they
  are never among them);
- :func:`user_rows`: a stage that iterates over users (e.g. a mapping fitted per user);
- :func:`histories`: each user's most recent items per domain, ``-1`` padded (shared with the
  composed trainer: :func:`crossbench.train.composed.build_histories`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from crossbench.data.protocols import FitSplit
from crossbench.errors import CrossbenchError
from crossbench.train.composed import build_histories
from crossbench.train.stages import StageData

__all__ = ["domain_pairs", "histories", "overlapping_users", "user_rows"]


def domain_pairs(
    split: FitSplit, domain: str, *, users: np.ndarray | None = None, ratings: bool = False
) -> StageData:
    """Training interactions of ``domain`` as columns ``user``, ``item`` (int64) and, with
    ``ratings``, ``rating`` (float32); only the rows of ``users`` when given."""
    dom = split.train.domain(domain)
    inter = dom.interactions
    u = inter["user"].to_numpy().astype(np.int64)
    i = inter["item"].to_numpy().astype(np.int64)
    keep = np.ones(len(u), dtype=bool) if users is None else np.isin(u, users)
    columns = {"user": torch.from_numpy(u[keep].copy()), "item": torch.from_numpy(i[keep].copy())}
    if ratings:
        if "rating" not in inter.columns:
            raise CrossbenchError(
                f"domain {domain!r} of dataset {split.train.name!r} has no ratings; use objective='ranking' or a dataset with ratings"
            )
        columns["rating"] = torch.from_numpy(inter["rating"].to_numpy(dtype=np.float32)[keep].copy())
    if not len(columns["user"]):
        raise CrossbenchError(f"domain {domain!r} has no training interactions{' for the users asked' if users is not None else ''}")
    return StageData(columns)


def overlapping_users(split: FitSplit, domains: Sequence[str]) -> np.ndarray:
    """Sorted user indices with training interactions in every domain of ``domains``."""
    out: np.ndarray | None = None
    for d in domains:
        users = split.train.domain(d).users()
        out = users if out is None else np.intersect1d(out, users)
    return np.zeros(0, dtype=np.int64) if out is None else out.astype(np.int64)


def user_rows(users: np.ndarray) -> StageData:
    """A stage over users: one column ``user``."""
    if len(users) == 0:
        raise CrossbenchError("no users to train on (no user has training interactions in every domain asked)")
    return StageData({"user": torch.as_tensor(np.asarray(users, dtype=np.int64))})


def histories(split: FitSplit, length: int) -> dict[str, torch.Tensor]:
    """Per domain ``[n_users, length]`` most recent training items, ``-1`` padding on the left."""
    return build_histories(split.train, length)
