"""DisenCDR's variational bipartite graph encoders (VBGE), the parts :mod:`crossbench_cdr.disencdr` composes.

A domain's graph is read through two row-normalised propagation matrices: ``uv`` (users x
items, row ``u`` averages the items ``u`` took) and ``vu`` (items x users, row ``i`` averages
the users who took ``i``). A user or item without edges has an empty row: it receives only the
convolution's bias. (crossbench's shared propagation, :mod:`crossbench.train.graph`, uses the
symmetric LightGCN normalisation over one square adjacency; DisenCDR's encoder averages in each
direction with its own weights, so it is not the same operation.)

- :class:`GraphConv`: ``leaky_relu(P (x W) + b)`` for a propagation matrix ``P``;
- :class:`SingleEncoder`: one domain's encoder; every layer but the last maps users through
  their items' users (``vu`` then ``uv``) and items through their users' items, joins the result
  with the layer's input by a linear map and a ReLU; the last layer does the same with a
  mean branch and a log-scale branch and draws a Gaussian sample (the mean when not training);
- :class:`CrossEncoder`: the shared-user encoder; each layer encodes a user in the source and
  in the target graph and mixes the two with the weight ``rate`` (the source share);
- :func:`scale` maps a log-scale output to a standard deviation ``exp(0.1 + 0.9 softplus(l))``
  and :func:`gaussian_kl` is ``KL(N(m1, s1) || N(m2, s2))``, averaged over rows and summed over
  dimensions.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from crossbench_cdr.cdrib_encoder import GraphConvParams

#: the log-scale the prior is given as: its standard deviation is ``scale(1) ~ 3.60``
PRIOR_LOG_SCALE = 1.0


def scale(log_scale: torch.Tensor) -> torch.Tensor:
    """``exp(0.1 + 0.9 * softplus(log_scale))``: the standard deviation a log-scale output stands for."""
    return torch.exp(0.1 + 0.9 * F.softplus(log_scale))


def gaussian_kl(mean1: torch.Tensor, log1: torch.Tensor, mean2: torch.Tensor, log2: torch.Tensor) -> torch.Tensor:
    """``KL(N(mean1, scale(log1)) || N(mean2, scale(log2)))`` per entry, averaged over rows, summed over columns."""
    s1, s2 = scale(log1), scale(log2)
    kl = torch.log(s2 / s1) + (s1**2 + (mean1 - mean2) ** 2) / (2 * s2**2) - 0.5
    return kl.mean(0).sum()


def sample(mean: torch.Tensor, log_scale: torch.Tensor, training: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(a draw, its KL to the prior). Training draws ``mean + eps * exp(scale(log_scale))``, as the
    authors' code does (the noise's standard deviation is the exponential of the posterior's); else the mean.
    The KL is to ``N(0, scale(PRIOR_LOG_SCALE))``."""
    prior = torch.full_like(log_scale, PRIOR_LOG_SCALE)
    kl = gaussian_kl(mean, log_scale, torch.zeros_like(mean), prior)
    if not training:
        return mean, kl
    return mean + torch.randn_like(mean) * torch.exp(scale(log_scale)), kl


#: a propagation matrix and its transpose, both sparse CSR (the transpose serves the backward pass)
Prop = tuple[torch.Tensor, torch.Tensor]


class _Product(torch.autograd.Function):
    """``P @ x`` whose gradient with respect to ``x`` is ``P^T @ grad`` (``P^T`` kept ready, no sparse transpose per step)."""

    @staticmethod
    def forward(ctx: Any, prop: torch.Tensor, prop_t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx.prop_t = prop_t
        return prop @ x

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[None, None, torch.Tensor]:
        return None, None, ctx.prop_t @ grad.contiguous()


class GraphConv(GraphConvParams):
    """``leaky_relu(P (x W) + b)``; ``W`` and ``b`` uniform in ``±1/sqrt(out)`` (CDRIB's initialisation, shared)."""

    def forward(self, x: torch.Tensor, prop: Prop) -> torch.Tensor:
        return F.leaky_relu(_Product.apply(prop[0], prop[1], x @ self.weight) + self.bias, self.leaky)


class _Side(nn.Module):
    """One node type's two-hop path (``first`` over one matrix, ``second`` over the other), joined with its input.
    ``branches`` second convolutions and joins: one (plain layer) or two (mean and log-scale)."""

    def __init__(self, dim: int, hidden: int, leaky: float, branches: int) -> None:
        super().__init__()
        self.first = GraphConv(dim, hidden, leaky)
        self.second = nn.ModuleList(GraphConv(hidden, dim, leaky) for _ in range(branches))
        self.join = nn.ModuleList(nn.Linear(2 * dim, dim) for _ in range(branches))

    def forward(self, x: torch.Tensor, first: Prop, second: Prop) -> list[torch.Tensor]:
        h = self.first(x, first)
        return [join(torch.cat([conv(h, second), x], 1)) for conv, join in zip(self.second, self.join)]


class SingleEncoder(nn.Module):
    """One domain's VBGE: ``layers - 1`` plain layers, then the variational layer."""

    def __init__(self, dim: int, hidden: int, layers: int, dropout: float, leaky: float) -> None:
        super().__init__()
        self.dropout = dropout
        self.users = nn.ModuleList(_Side(dim, hidden, leaky, 1 if k < layers - 1 else 2) for k in range(layers))
        self.items = nn.ModuleList(_Side(dim, hidden, leaky, 1 if k < layers - 1 else 2) for k in range(layers))

    def forward(self, u: torch.Tensor, v: torch.Tensor, uv: Prop, vu: Prop) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(user draws, item draws, their KL to the prior); dropout before every layer."""
        last = len(self.users) - 1
        for k in range(last):
            u, v = F.dropout(u, self.dropout, self.training), F.dropout(v, self.dropout, self.training)
            (u2,), (v2,) = self.users[k](u, vu, uv), self.items[k](v, uv, vu)
            u, v = F.relu(u2), F.relu(v2)
        u, v = F.dropout(u, self.dropout, self.training), F.dropout(v, self.dropout, self.training)
        um, ul = self.users[last](u, vu, uv)
        vm, vl = self.items[last](v, uv, vu)
        users, kl_u = sample(um, ul, self.training)
        items, kl_v = sample(vm, vl, self.training)
        return users, items, kl_u + kl_v

    def user_posterior(self, u: torch.Tensor, uv: Prop, vu: Prop) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, log-scale) of the users through the user path only; dropout before every layer but the last."""
        last = len(self.users) - 1
        for k in range(last):
            (u2,) = self.users[k](F.dropout(u, self.dropout, self.training), vu, uv)
            u = F.relu(u2)
        mean, log_scale = self.users[last](u, vu, uv)
        return mean, log_scale


class CrossEncoder(nn.Module):
    """The shared-user VBGE: per layer, a user's source-graph and target-graph encodings mixed by ``rate``."""

    def __init__(self, dim: int, hidden: int, layers: int, dropout: float, leaky: float) -> None:
        super().__init__()
        self.dropout = dropout
        self.source = nn.ModuleList(_Side(dim, hidden, leaky, 1 if k < layers - 1 else 2) for k in range(layers))
        self.target = nn.ModuleList(_Side(dim, hidden, leaky, 1 if k < layers - 1 else 2) for k in range(layers))

    def forward(
        self, su: torch.Tensor, tu: torch.Tensor, graphs: tuple[Prop, Prop, Prop, Prop],
        rate: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, log-scale) of the shared users; ``graphs`` is (source uv, source vu, target uv, target vu)."""
        suv, svu, tuv, tvu = graphs
        last = len(self.source) - 1
        for k in range(last):
            su, tu = F.dropout(su, self.dropout, self.training), F.dropout(tu, self.dropout, self.training)
            (s,), (t,) = self.source[k](su, svu, suv), self.target[k](tu, tvu, tuv)
            su = tu = rate * F.relu(s) + (1 - rate) * F.relu(t)
        sm, sl = self.source[last](su, svu, suv)
        tm, tl = self.target[last](tu, tvu, tuv)
        return rate * sm + (1 - rate) * tm, rate * sl + (1 - rate) * tl


def row_normalised(rows: torch.Tensor, cols: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """The sparse (COO) ``shape`` matrix with a 1 at each distinct (row, col), each row divided by its count."""
    n_cols = shape[1]
    keys = torch.unique(rows * n_cols + cols)
    r, c = keys // n_cols, keys % n_cols
    degree = torch.bincount(r, minlength=shape[0]).double()
    values = (1.0 / degree[r]).float()
    return torch.sparse_coo_tensor(torch.stack([r, c]), values, shape, check_invariants=True).coalesce()
