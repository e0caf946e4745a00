"""CDRIB's variational bipartite graph encoder (VBGE), one per domain.

Cao et al. (ICDE 2022) encode each domain's user-item graph with stacked two-hop graph
convolutions whose last layer is variational. The propagation is the MEAN over neighbours
(row-normalised adjacency), each hop with its own weight, bias and LeakyReLU, which is not the
symmetric, weight-free LightGCN propagation of :mod:`crossbench.train.graph`; so it lives here.

- :func:`mean_adjacency`: ``UV`` (users x items) and ``VU`` (items x users), each row divided by
  its sum (a row without edges stays zero); a pair seen twice weighs twice.
- :class:`GraphConv`: ``leaky_relu(adj @ (x @ W) + b)``, ``W`` and ``b`` uniform in
  ``±1/sqrt(out)``.
- A hop layer maps users through their items back to users (``UV @ (VU @ (u W1) ...)``) and items
  through their users back to items, and joins each result with its input: ``relu(Linear([hop; input]))``.
- The last layer does the same twice, once for the mean and once for the log-scale of a Gaussian
  per node; ``sigma = exp(0.1 + 0.9 * softplus(min(logstd, 0.4)))``. Training samples
  ``z = mean + sigma * noise``; evaluation uses the mean. Its KL divergence from the prior
  (mean 0, the same bounded scale at ``logstd = 1``) is averaged over nodes and summed over
  dimensions; the users' term is weighted by ``beta``.
- :class:`VBGE` applies dropout before every layer and returns every layer's output
  concatenated (``dim * layers`` per node) and the weighted KL.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def mean_adjacency(users: np.ndarray, items: np.ndarray, *, n_users: int, n_items: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Row-normalised ``(UV [n_users, n_items], VU [n_items, n_users])`` sparse COO float32 matrices."""

    def rows_normalised(rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]) -> torch.Tensor:
        sums = np.bincount(rows, minlength=shape[0]).astype(np.float64)
        values = (1.0 / sums[rows]) if len(rows) else np.zeros(0)
        index = torch.as_tensor(np.stack([rows, cols]).astype(np.int64))
        return torch.sparse_coo_tensor(index, torch.as_tensor(values, dtype=torch.float32), shape, check_invariants=True).coalesce()

    users, items = np.asarray(users, np.int64), np.asarray(items, np.int64)
    return rows_normalised(users, items, (n_users, n_items)), rows_normalised(items, users, (n_items, n_users))


class GraphConvParams(nn.Module):
    """The parameters both authors' graph convolutions (CDRIB's and DisenCDR's) share: ``W`` (in x out) and
    ``b``, uniform in ``±1/sqrt(out)``, and the leaky ReLU's slope; subclasses say how a hop propagates."""

    def __init__(self, n_in: int, n_out: int, leaky: float) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(n_out)
        self.weight = nn.Parameter(torch.empty(n_in, n_out).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(n_out).uniform_(-bound, bound))
        self.leaky = leaky


class GraphConv(GraphConvParams):
    """``leaky_relu(adj @ (x @ W) + b)``: one hop from the nodes of ``x`` to the rows of ``adj``."""

    def forward(self, x: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(torch.sparse.mm(adj, x @ self.weight) + self.bias, self.leaky)


class HopLayer(nn.Module):
    """Users through their items back to users (and items through users), joined with the input."""

    def __init__(self, dim: int, leaky: float) -> None:
        super().__init__()
        self.user_in, self.user_out = GraphConv(dim, dim, leaky), GraphConv(dim, dim, leaky)
        self.item_in, self.item_out = GraphConv(dim, dim, leaky), GraphConv(dim, dim, leaky)
        self.user_join, self.item_join = nn.Linear(2 * dim, dim), nn.Linear(2 * dim, dim)

    def forward(self, u: torch.Tensor, i: torch.Tensor, uv: torch.Tensor, vu: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hu = self.user_out(self.user_in(u, vu), uv)
        hi = self.item_out(self.item_in(i, uv), vu)
        return F.relu(self.user_join(torch.cat([hu, u], 1))), F.relu(self.item_join(torch.cat([hi, i], 1)))


def bounded_sigma(logstd: torch.Tensor) -> torch.Tensor:
    """The encoder's scale: ``exp(0.1 + 0.9 * softplus(min(logstd, 0.4)))`` (between e^0.1 and about e^0.92)."""
    return torch.exp(0.1 + 0.9 * F.softplus(torch.clamp_max(logstd, 0.4)))


def gaussian_kl(mean: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """``KL(N(mean, sigma) || N(0, bounded_sigma(1)))`` per element, averaged over rows, summed over columns."""
    prior = bounded_sigma(torch.ones(()))
    kl = torch.log(prior / sigma) + (sigma**2 + mean**2) / (2 * prior**2) - 0.5
    return kl.mean(0).sum()


class VariationalLayer(nn.Module):
    """The last layer: a Gaussian per user and per item (mean and log-scale by separate hops)."""

    def __init__(self, dim: int, leaky: float) -> None:
        super().__init__()
        self.user_in, self.item_in = GraphConv(dim, dim, leaky), GraphConv(dim, dim, leaky)
        self.user_mean, self.user_logstd = GraphConv(dim, dim, leaky), GraphConv(dim, dim, leaky)
        self.item_mean, self.item_logstd = GraphConv(dim, dim, leaky), GraphConv(dim, dim, leaky)
        self.user_join_mean, self.user_join_logstd = nn.Linear(2 * dim, dim), nn.Linear(2 * dim, dim)
        self.item_join_mean, self.item_join_logstd = nn.Linear(2 * dim, dim), nn.Linear(2 * dim, dim)

    def gaussian(self, x: torch.Tensor, hop: torch.Tensor, adj: torch.Tensor, side: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, sigma) of ``side``'s nodes from the first hop ``hop`` and their own input ``x``."""
        mean = getattr(self, f"{side}_join_mean")(torch.cat([getattr(self, f"{side}_mean")(hop, adj), x], 1))
        logstd = getattr(self, f"{side}_join_logstd")(torch.cat([getattr(self, f"{side}_logstd")(hop, adj), x], 1))
        return mean, bounded_sigma(logstd)

    def forward(self, u: torch.Tensor, i: torch.Tensor, uv: torch.Tensor, vu: torch.Tensor,
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(users, items, user KL, item KL): samples while training, means otherwise."""
        u_mean, u_sigma = self.gaussian(u, self.user_in(u, vu), uv, "user")
        i_mean, i_sigma = self.gaussian(i, self.item_in(i, uv), vu, "item")
        if self.training:
            zu, zi = u_mean + u_sigma * torch.randn_like(u_mean), i_mean + i_sigma * torch.randn_like(i_mean)
        else:
            zu, zi = u_mean, i_mean
        return zu, zi, gaussian_kl(u_mean, u_sigma), gaussian_kl(i_mean, i_sigma)


class VBGE(nn.Module):
    """``layers - 1`` hop layers and the variational layer; dropout before each; outputs concatenated."""

    def __init__(self, dim: int, layers: int, dropout: float, leaky: float) -> None:
        super().__init__()
        self.hops = nn.ModuleList(HopLayer(dim, leaky) for _ in range(layers - 1))
        self.last = VariationalLayer(dim, leaky)
        self.dropout = dropout

    def forward(self, u: torch.Tensor, i: torch.Tensor, uv: torch.Tensor, vu: torch.Tensor, *, beta: float,
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(users ``[n_users, dim * layers]``, items ``[n_items, dim * layers]``, ``beta * KL_users + KL_items``)."""
        users, items = [], []
        for hop in self.hops:
            u, i = hop(F.dropout(u, self.dropout, self.training), F.dropout(i, self.dropout, self.training), uv, vu)
            users.append(u)
            items.append(i)
        u, i, kl_u, kl_i = self.last(F.dropout(u, self.dropout, self.training), F.dropout(i, self.dropout, self.training), uv, vu)
        return torch.cat([*users, u], 1), torch.cat([*items, i], 1), beta * kl_u + kl_i
