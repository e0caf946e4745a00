"""Item-item whole models: ItemKNN (cosine with shrinkage, top-k neighbours) and EASE (closed form).

Both read a binary user x item matrix. With ``domains="all"`` its columns are the items of
every domain side by side, so a user's source-domain items score target items through
learned cross-domain item relations (users cold in the target are then served); with
``domains="target"`` only the target domain is used, as in the single-domain originals.
Item-item matrices are dense: catalogues up to ``MAX_COLUMNS`` items in total.

Popularity fallback: a user whose score row is all zero (with ``domains="target"`` every
user cold in the target; with ``domains="all"`` a user with no history anywhere) would have
every item tied. Such rows get the target popularity prior instead: each target item's
training interaction count times ``PRIOR_SCALE / max count``, so the row ranks items as
Popularity does. The prior is tiny and is never added to a row with a nonzero score, so the
scores of users the item-item weights can serve are unchanged.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from crossbench.data.model import CrossDomainData
from crossbench.data.protocols import FitSplit
from crossbench.errors import CrossbenchError
from crossbench.plugin.interfaces import FitReport, Recommender, RunEnv

MAX_COLUMNS = 30_000
#: the largest value of the popularity prior that fills all-zero score rows
PRIOR_SCALE = 1e-6


class UserItemRows:
    """The binary user x item matrix as CSR arrays, densified a batch of rows at a time."""

    def __init__(self, data: CrossDomainData, domains: list[str]) -> None:
        users, cols, offset = [], [], 0
        self.offsets: dict[str, int] = {}
        for d in domains:
            inter = data.domain(d).interactions
            users.append(inter["user"].to_numpy())
            cols.append(inter["item"].to_numpy() + offset)
            self.offsets[d] = offset
            offset += data.domain(d).n_items
        self.n_cols, self.n_users = offset, data.n_users
        pairs = np.unique(np.stack([np.concatenate(users), np.concatenate(cols)], axis=1), axis=0)
        counts = np.bincount(pairs[:, 0], minlength=self.n_users)
        self.indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self.indices = pairs[:, 1].astype(np.int64)

    def dense(self, users: np.ndarray, device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        lengths = self.indptr[users + 1] - self.indptr[users]
        rows = np.repeat(np.arange(len(users)), lengths)
        cols = np.concatenate([self.indices[self.indptr[u] : self.indptr[u + 1]] for u in users]) if len(users) else np.zeros(0, np.int64)
        out = torch.zeros(len(users), self.n_cols, dtype=dtype, device=device)
        out[torch.as_tensor(rows, device=device), torch.as_tensor(cols, device=device)] = 1.0
        return out

    def gram(self, device: torch.device, block: int = 2048) -> torch.Tensor:
        """``X^T X`` in float64, accumulated over blocks of users."""
        g = torch.zeros(self.n_cols, self.n_cols, dtype=torch.float64, device=device)
        for start in range(0, self.n_users, block):
            x = self.dense(np.arange(start, min(start + block, self.n_users)), device, torch.float64)
            g += x.T @ x
        return g


class _ItemItem(Recommender):
    name = ""

    def __init__(self, *, domains: str) -> None:
        if domains not in ("all", "target"):
            raise CrossbenchError(f"model {self.name!r}: domains must be 'all' or 'target', got {domains!r}")
        self.domains = domains
        self.weights: torch.Tensor | None = None

    def fit(self, split: FitSplit, *, env: RunEnv) -> FitReport:
        names = split.train.domain_names if self.domains == "all" else [split.target]
        self.rows = UserItemRows(split.train, names)
        if self.rows.n_cols > MAX_COLUMNS:
            raise CrossbenchError(
                f"model {self.name!r}: {self.rows.n_cols} item columns exceed the dense limit {MAX_COLUMNS}; "
                f"use domains='target' or a smaller catalogue"
            )
        lo = self.rows.offsets[split.target]
        self.target_cols = slice(lo, lo + split.train.domain(split.target).n_items)
        self.device = env.device
        self.prior = popularity_prior(split.train, split.target, device=env.device)
        t0 = time.perf_counter()
        self.weights = self._weights(self.rows.gram(env.device))[:, self.target_cols].float().contiguous()
        return FitReport(threads=torch.get_num_threads(), train_seconds=time.perf_counter() - t0)

    def _weights(self, gram: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def score(self, users: torch.Tensor, *, out: torch.Tensor | None = None) -> torch.Tensor:
        if self.weights is None:
            raise CrossbenchError(f"model {self.name!r}: score() called before fit()")
        x = self.rows.dense(users.cpu().numpy(), self.device)
        scores = x @ self.weights if out is None else torch.matmul(x, self.weights, out=out)
        empty = ~(scores != 0).any(dim=1)
        if bool(empty.any()):
            scores[empty] = self.prior
        return scores

    def reads_source_domains(self) -> bool:
        return self.domains == "all"

    def cold_users(self) -> str:
        if self.domains == "all":
            return "from source-domain history"
        return "popularity fallback (target popularity order)"


def popularity_prior(data: CrossDomainData, target: str, *, device: torch.device) -> torch.Tensor:
    """Training interaction counts of the target items scaled into ``[0, PRIOR_SCALE]`` (float32)."""
    dom = data.domain(target)
    counts = np.bincount(dom.interactions["item"].to_numpy(), minlength=dom.n_items).astype(np.float64)
    scale = PRIOR_SCALE / max(float(counts.max(initial=0.0)), 1.0)
    return torch.as_tensor(counts * scale, dtype=torch.float32, device=device)


class ItemKNN(_ItemItem):
    """Asymmetric-cosine item-item similarity with shrinkage, keeping each target item's ``k`` nearest items."""

    name = "itemknn"

    def __init__(self, *, k: int, shrink: float, alpha: float, domains: str) -> None:
        super().__init__(domains=domains)
        if not 0.0 <= alpha <= 1.0:
            raise CrossbenchError(f"model 'itemknn': alpha must be in [0, 1], got {alpha}")
        if k < 1 or shrink < 0:
            raise CrossbenchError(f"model 'itemknn': k must be at least 1 and shrink not negative, got k={k}, shrink={shrink}")
        self.k, self.shrink, self.alpha = k, shrink, alpha

    def _weights(self, gram: torch.Tensor) -> torch.Tensor:
        counts = gram.diagonal()
        # asymmetric cosine: row (history item) count^alpha x column (scored item) count^(1 - alpha)
        sim = gram / (counts[:, None].pow(self.alpha) * counts[None, :].pow(1.0 - self.alpha) + self.shrink + 1e-12)
        sim.fill_diagonal_(0.0)
        k = min(self.k, sim.shape[0])
        top = torch.topk(sim, k, dim=0)
        out = torch.zeros_like(sim)
        out.scatter_(0, top.indices, top.values)
        return out

    def describe(self) -> dict[str, Any]:
        params = {"k": self.k, "shrink": self.shrink, "alpha": self.alpha, "domains": self.domains}
        return {"components": {"recommender": {"name": self.name, "params": params}}}


class EASE(_ItemItem):
    """Embarrassingly shallow autoencoder: ``B = I - P / diag(P)`` with ``P = (X^T X + l2 I)^-1``."""

    name = "ease"

    def __init__(self, *, l2: float, domains: str) -> None:
        super().__init__(domains=domains)
        if not l2 > 0:
            raise CrossbenchError(f"model 'ease': l2 must be positive (it keeps the Gram matrix invertible), got {l2}")
        self.l2 = l2

    def _weights(self, gram: torch.Tensor) -> torch.Tensor:
        gram = gram + self.l2 * torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
        p = torch.linalg.inv(gram)
        b = -p / p.diagonal()[None, :]
        b.fill_diagonal_(0.0)
        return b

    def describe(self) -> dict[str, Any]:
        return {"components": {"recommender": {"name": self.name, "params": {"l2": self.l2, "domains": self.domains}}}}
