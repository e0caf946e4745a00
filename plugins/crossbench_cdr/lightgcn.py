"""LightGCN: linear propagation of ID embeddings over the user-item graph, trained with BPR.

He, Deng, Wang, Li, Zhang, Wang, "LightGCN: Simplifying and Powering Graph Convolution
Network for Recommendation", SIGIR 2020. Each user and item has one ID embedding ``e^(0)``
(the only parameters). ``K`` layers propagate them over the normalised interaction graph,
``e^(k+1) = D^-1/2 A D^-1/2 e^(k)`` (no transformation, no non-linearity, no self-loop), and
the final embedding is the layer mean ``(1 / (K + 1)) * sum_k e^(k)``. A user-item score is
the dot product of the final embeddings. Training: BPR on each training interaction against
one item drawn uniformly from the items the user has not interacted with, plus
``l2 * (|e_u^(0)|^2 + |e_i^(0)|^2 + |e_j^(0)|^2) / 2`` over the batch's ego embeddings,
divided by the batch size (the authors' code), Adam. Propagation is
:mod:`crossbench.train.graph`.

Two variants, registered as two models:

- ``lightgcn`` (``graph="target"``): the graph of the target domain's training interactions.
  A user without target interactions (every test and validation user of a cold-start split)
  is an isolated node with an untrained embedding: the model cannot serve them, and scores
  them all alike (every item tied, so the evaluator ranks them pessimistically). It says so
  in :meth:`LightGCN.cold_users`.
- ``lightgcn-merged`` (``graph="merged"``): one graph over every domain's training
  interactions, users shared by index (:func:`crossbench.train.graph.merged_graph`); BPR on every
  domain's interactions, each negative drawn from its positive's own domain. A user without
  target interactions reaches the target items through their source-domain items and the
  users they share with them; they are scored against the target items only. This is not a
  model of the paper (which is single-domain); it is LightGCN applied to the merged graph.

Defaults are the paper's: ``dim=64``, ``layers=3``, ``lr=1e-3``, ``l2=1e-4``, Xavier
(uniform) initialisation, ``batch_size=1024`` (the paper's default mini-batch; the authors'
PyTorch code and RecBole use 2048). Differences from the paper, and why:

- training iterates over the interactions, shuffled, each epoch (as RecBole does); the
  authors' code draws a user, then one of their items, as many times as there are
  interactions: the same expected pairs;
- early stopping on validation users with the core NDCG@10 after ``patience=50`` epochs without
  a better score (the paper follows NGCF: 50 epochs without a better Recall@20), at most
  ``epochs=1000`` epochs (the authors' code's default). A shorter patience stops too early at
  lr 1e-3: on the development benchmark (seed 1) ``lightgcn-merged`` stayed near its first
  epoch's validation score for more than 10 epochs before it improved;
- negatives are redrawn at most 20 times when they hit one of the user's positives (almost
  never all 20 on real data), the authors' code redraws until it misses;
- scores of users with no edge in the graph are all 0 (see above), not their untrained
  embeddings' products.

Python API (what the fidelity benchmark calls, on data it builds)::

    from crossbench.plugin.interfaces import RunEnv
    from crossbench_cdr.lightgcn import LightGCN
    model = LightGCN(graph="target", dim=64, layers=3, lr=1e-3, l2=1e-4, batch_size=2048, epochs=300, patience=10)
    report = model.fit(fit_split, env=RunEnv(registry=None, seed=0))  # a crossbench.data.protocols.FitSplit
    scores = model.score(torch.arange(n_users))       # [n_users, n_target_items] float32
    users, items = model.embeddings()                 # final (layer-mean) embeddings, target items only

``fit_split.train`` needs only the target domain for ``graph="target"``; with no validation
users in ``fit_split.valid`` every epoch runs (no early stopping) and the last epoch is kept.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from crossbench.data.protocols import FitSplit
from crossbench.errors import CrossbenchError, unknown_name_message
from crossbench.plugin.interfaces import RunEnv
from crossbench.train.graph import BipartiteGraph, PropagatedModule, domain_graph, light_gcn, merged_graph
from crossbench.train.stages import EarlyStopping, Stage, StageData, StagedRecommender

GRAPHS = ("target", "merged")
#: at most this many redraws of a negative that is one of the user's positives
REDRAWS = 20


class NegativeSampler:
    """Uniform negatives per row from an item range ``[low, high)``, redrawn while they are the user's positives.

    Built from the training pairs (``users``, global ``items``) of a graph with ``n_items`` item
    nodes; membership is a binary search in the sorted ``user * n_items + item`` keys (memory
    linear in the interactions).
    """

    def __init__(self, users: np.ndarray, items: np.ndarray, n_items: int) -> None:
        self.n_items = n_items
        self.keys = torch.as_tensor(np.unique(users.astype(np.int64) * n_items + items.astype(np.int64)))

    def to(self, device: torch.device) -> NegativeSampler:
        self.keys = self.keys.to(device)
        return self

    def is_positive(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        keys = users * self.n_items + items
        pos = torch.searchsorted(self.keys, keys).clamp(max=max(len(self.keys) - 1, 0))
        return self.keys[pos] == keys if len(self.keys) else torch.zeros_like(keys, dtype=torch.bool)

    def sample(self, users: torch.Tensor, low: torch.Tensor, high: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One negative per row, uniform in ``[low[k], high[k])`` (global item indices)."""
        span = (high - low).to(torch.float64)
        draw = lambda n: (torch.rand(n, generator=generator, device=users.device, dtype=torch.float64) * span).long()  # noqa: E731
        neg = low + draw(len(users)).clamp(max=(high - low - 1).clamp(min=0))
        for _ in range(REDRAWS):
            hit = self.is_positive(users, neg)
            if not bool(hit.any()):
                break
            again = low + draw(len(users)).clamp(max=(high - low - 1).clamp(min=0))
            neg = torch.where(hit, again, neg)
        return neg


class LightGCNModule(PropagatedModule[tuple[torch.Tensor, torch.Tensor]]):
    """ID embeddings of every user and item node of ``graph``; :meth:`final` propagates them."""

    connected: torch.Tensor

    def __init__(self, graph: BipartiteGraph, *, dim: int, layers: int, target_items: slice) -> None:
        super().__init__()
        self.graph = graph
        self.layers = layers
        self.target_items = target_items
        self.user = nn.Embedding(graph.n_users, dim)
        self.item = nn.Embedding(graph.n_items, dim)
        nn.init.xavier_uniform_(self.user.weight)
        nn.init.xavier_uniform_(self.item.weight)
        #: users with at least one edge in the graph (the others are scored all-tied)
        self.register_buffer("connected", graph.user_degree > 0)

    def propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Final (layer-mean) user and item embeddings of every node."""
        ego = torch.cat([self.user.weight, self.item.weight])
        return self.graph.split(light_gcn(self.graph, ego, layers=self.layers))


    def scores(self, users: torch.Tensor) -> torch.Tensor:
        """Dot products of ``users`` with every target item; 0 for users with no edge."""
        u, i = self.final()
        s = u[users] @ i[self.target_items].T
        return s * self.connected[users].unsqueeze(1).to(s.dtype)


def bpr_loss(
    users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, final: tuple[torch.Tensor, torch.Tensor],
    ego: tuple[nn.Embedding, nn.Embedding], l2: float,
) -> torch.Tensor:
    """Mean BPR of (user, positive, negative) on the final embeddings plus LightGCN's L2 on the ego ones."""
    fu, fi = final
    u = fu[users]
    margin = (u * fi[pos]).sum(-1) - (u * fi[neg]).sum(-1)
    loss = F.softplus(-margin).mean()  # = -log sigmoid(margin)
    if l2 > 0:
        eu, ei = ego[0](users), ego[1]
        reg = eu.pow(2).sum() + ei(pos).pow(2).sum() + ei(neg).pow(2).sum()
        loss = loss + l2 * reg / (2 * len(users))
    return loss


class LightGCN(StagedRecommender):
    """LightGCN (He et al., SIGIR 2020) on the target graph or on the merged cross-domain graph; see the module docstring."""

    def __init__(
        self, *, graph: str = "target", dim: int = 64, layers: int = 3, lr: float = 1e-3, l2: float = 1e-4,
        batch_size: int = 1024, epochs: int = 1000, patience: int = 50, valid_k: int = 10,
    ) -> None:
        if graph not in GRAPHS:
            raise CrossbenchError("lightgcn: " + unknown_name_message("graph", graph, GRAPHS))
        bad = [f"{k}={v}" for k, v in (("dim", dim), ("batch_size", batch_size), ("epochs", epochs), ("patience", patience),
                                        ("valid_k", valid_k)) if v < 1]
        if layers < 0 or not lr > 0 or l2 < 0 or bad:
            raise CrossbenchError(f"lightgcn: layers >= 0, lr > 0, l2 >= 0 and {', '.join(bad) or 'sizes'} >= 1 needed; "
                                  f"got layers={layers}, lr={lr}, l2={l2}")
        self.graph, self.dim, self.layers, self.lr, self.l2 = graph, dim, layers, lr, l2
        self.batch_size, self.epochs, self.patience, self.valid_k = batch_size, epochs, patience, valid_k

    def settings(self) -> Mapping[str, Any]:
        return {"graph": self.graph, "dim": self.dim, "layers": self.layers, "lr": self.lr, "l2": self.l2,
                "batch_size": self.batch_size, "epochs": self.epochs, "patience": self.patience, "valid_k": self.valid_k}

    def reads_source_domains(self) -> bool:
        return self.graph == "merged"

    def cold_users(self) -> str:
        if self.graph == "merged":
            return "from source-domain edges of the merged graph"
        return "cannot serve (no target-domain edges: all scores tied)"

    def _domains(self, split: FitSplit) -> list[str]:
        if self.graph == "target":
            return [split.target]
        return [split.target, *[d for d in split.train.domain_names if d != split.target]]

    def build(self, split: FitSplit, env: RunEnv) -> LightGCNModule:
        if self.graph == "target":
            g = domain_graph(split.train, split.target)
            target = slice(0, g.n_items)
        else:
            g = merged_graph(split.train, self._domains(split))
            target = g.item_slices[split.target]
        return LightGCNModule(g, dim=self.dim, layers=self.layers, target_items=target)

    def stages(self, split: FitSplit, model: nn.Module, env: RunEnv) -> Sequence[Stage]:
        assert isinstance(model, LightGCNModule)
        users, items, lows, highs, offset = [], [], [], [], 0
        for d in self._domains(split):
            inter = split.train.domain(d).interactions
            n = split.train.domain(d).n_items
            users.append(inter["user"].to_numpy().astype(np.int64))
            items.append(inter["item"].to_numpy().astype(np.int64) + offset)
            lows.append(np.full(len(inter), offset, np.int64))
            highs.append(np.full(len(inter), offset + n, np.int64))
            offset += n
        u, i = np.concatenate(users), np.concatenate(items)
        sampler = NegativeSampler(u, i, model.graph.n_items).to(env.device)
        data = StageData({"user": torch.as_tensor(u), "item": torch.as_tensor(i),
                          "low": torch.as_tensor(np.concatenate(lows)), "high": torch.as_tensor(np.concatenate(highs))})
        l2 = self.l2

        def loss(m: nn.Module, batch: Mapping[str, torch.Tensor], gen: torch.Generator) -> torch.Tensor:
            assert isinstance(m, LightGCNModule)
            neg = sampler.sample(batch["user"], batch["low"], batch["high"], gen)
            return bpr_loss(batch["user"], batch["item"], neg, m.final(), (m.user, m.item), l2)

        return [Stage("bpr", trains=("user.", "item."), loss=loss, data=data, epochs=self.epochs, batch_size=self.batch_size,
                      lr=self.lr, stop=EarlyStopping(patience=self.patience, valid_k=self.valid_k))]

    def score_users(self, model: nn.Module, users: torch.Tensor) -> torch.Tensor:
        assert isinstance(model, LightGCNModule)
        return model.scores(users)

    def embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Final (layer-mean) embeddings of the fitted model: every user ``[n_users, dim]``, target items ``[n_target_items, dim]``."""
        if not isinstance(self.model, LightGCNModule):
            raise CrossbenchError("lightgcn: embeddings() called before fit()")
        with torch.no_grad():
            self.model.eval()
            u, i = self.model.final()
            return u.detach(), i[self.model.target_items].detach()
