"""CDRIB: cross-domain recommendation to cold-start users through variational information bottlenecks.

Cao, Sheng, Cong, Liu & Wang, "Cross-Domain Recommendation to Cold-Start Users via Variational
Information Bottleneck", ICDE 2022. Each domain has a variational bipartite graph encoder
(VBGE, :mod:`crossbench_cdr.cdrib_encoder`) that turns the domain's user and item embeddings into
Gaussian latent representations. Two information-bottleneck regularisers tie the domains:

- cross-domain: an overlapping user's latent from ONE domain must predict their interactions in
  the OTHER domain, so what the representation keeps is what transfers;
- in-domain: users of one domain only predict their own interactions from their own latent;
- a KL term keeps each latent close to the prior (the users' term weighted by ``beta``), and a
  contrastive critic (a small MLP on the concatenated pair) must tell an overlapping user's
  (source, target) latents apart from pairs of different users.

A cold user (no target history) is served exactly as the paper intends: their target scores are
the dot products of their SOURCE-domain latent (the encoder's mean) with the target item latents.

What crossbench trains, as the authors' code (cjx96/CDRIB) does:

- per-domain user and item embeddings (``dim``, N(0, 1) initialisation) and a VBGE per domain
  with ``layers`` layers; a node's representation is every layer's output concatenated;
- the representation a user is scored with in a domain: the OTHER domain's latent when the user
  has training interactions there (overlapping users, and cold users of the target), otherwise
  the domain's own;
- one stage, ``joint``: every training interaction of both domains is a row; a batch runs both
  encoders over their whole graphs (dropout, sampled latents), and each row's positive and one
  negative item of its domain (uniform among the items the user did not take in training) are
  scored by dot product; the loss is the sum of four binary cross-entropies (positives and
  negatives of each domain, each averaged), both domains' KL terms and the critic's loss; the
  critic sees ``user_batch_size`` overlapping users' own pairs against pairs with a random
  user's latent on either side, by a hinge on the sigmoids with margin ``margin`` (``critic="bce"``:
  log-loss instead); Adam with weight decay; validation every epoch (core NDCG@10), the best
  epoch kept.

Differences from the authors' code, and why:

- they validate after epoch 10 and every 5 epochs by the MRR of 999 sampled negatives, never
  stop early, and report the test score of the best validation epoch; here the core's
  full-ranking NDCG@10 is validated after every epoch, and ``patience`` (default: ``epochs``,
  so no early stop) ends training; the best epoch's weights are kept;
- their learning rate decays by 0.9 after each evaluation from the eleventh on when the SOURCE
  domain's validation MRR did not improve; the staged base keeps one rate (with their 100
  epochs the decay can act only in the last 40);
- their rows are shuffled once, when the data is loaded, so every epoch cuts the same batches (only the
  negatives are redrawn); here the rows are reshuffled every epoch (seeded);
- their last batch of an epoch is padded with the first rows to a full batch; here it is short;
- their negative is redrawn up to five times and then kept even if the user took it; here it is
  uniform over the items the user did not take (exactly);
- they swap representations for the users numbered below the first cold user plus one (their
  files number overlapping users first), which takes in one cold user, and draw the critic's own
  pairs from those users; here exactly the users with training interactions in both domains;
- the critic's random users are drawn from every user of the dataset (theirs: the users numbered
  in the domain's file), and the KL averages over every user row of the domain's table;
- their hidden size must equal ``dim`` (the noise is drawn at the hidden size); here there is one ``dim``.

Together they leave no measurable gap: under the authors' protocol (10 epochs, ``dim=64``, 3 seeds)
crossbench and their code agree within the seed spread on every metric when both are ranked by
their argsort (``benchmarks/fidelity_cdrib.py``; docs/models.md, "CDRIB against its authors' code");
they were not tested one by one.

With more than two domains the non-target domains form one source domain
(:mod:`crossbench_cdr.sources`); ``source="<domain>"`` keeps one.

Defaults (the authors' ``train_rec.py``): ``dim=128``, ``layers=3``, ``dropout=0.3``,
``leaky=0.1``, ``beta=1.5``, ``margin=0.3``, ``critic="hinge"``, Adam ``lr=1e-3``,
``weight_decay=5e-4``, ``batch_size=1024`` interactions, ``user_batch_size=64``, ``epochs=100``.

Python API: ``CDRIB(**hyperparameters).fit(fit_split, env=RunEnv(registry=None, seed=s))``, then
``score(users)``; ``model.model.encode()`` gives the four latent tables and both KL terms,
``model.model.domain_users(su, tu)`` the rows each user is scored with in each domain.
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
from crossbench_cdr.cdrib_encoder import VBGE, mean_adjacency
from crossbench_cdr.sources import Side, two_sides

CRITICS = ("hinge", "bce")


class CDRIBModule(nn.Module):
    """Embeddings, one VBGE per domain, the critic; the graphs as (non-persistent) buffers."""

    def __init__(self, sides: Sequence[Side], n_users: int, *, dim: int, layers: int, dropout: float, leaky: float,
                 beta: float) -> None:
        super().__init__()
        source, target = sides
        self.beta = beta
        self.source_users, self.target_users = nn.Embedding(n_users, dim), nn.Embedding(n_users, dim)
        self.source_items, self.target_items = nn.Embedding(source.n_items, dim), nn.Embedding(target.n_items, dim)
        self.source_encoder = VBGE(dim, layers, dropout, leaky)
        self.target_encoder = VBGE(dim, layers, dropout, leaky)
        width = dim * layers
        self.critic = nn.Sequential(nn.Linear(2 * width, dim), nn.ReLU(), nn.Linear(dim, 100), nn.ReLU(), nn.Linear(100, 1))
        for side in sides:
            uv, vu = mean_adjacency(side.users, side.items, n_users=n_users, n_items=side.n_items)
            self.register_buffer(f"{side.name}_uv", uv, persistent=False)
            self.register_buffer(f"{side.name}_vu", vu, persistent=False)
        has = np.stack([source.counts() > 0, target.counts() > 0], 1)
        #: ``[n_users, 2]`` bool: the user has training interactions in (source, target)
        self.register_buffer("has", torch.as_tensor(has), persistent=False)
        self.register_buffer("overlap", torch.as_tensor(np.flatnonzero(has.all(1))), persistent=False)

    def encode(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(source users, source items, target users, target items, source KL, target KL) over the whole graphs."""
        with torch.autocast(device_type=self.has.device.type, enabled=False):
            su, si, kl_s = self.source_encoder(self.source_users.weight, self.source_items.weight, self.source_uv,
                                               self.source_vu, beta=self.beta)
            tu, ti, kl_t = self.target_encoder(self.target_users.weight, self.target_items.weight, self.target_uv,
                                               self.target_vu, beta=self.beta)
        return su, si, tu, ti, kl_s, kl_t

    def domain_users(self, su: torch.Tensor, tu: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each user's rows for scoring (source domain, target domain): the other domain's latent where the
        user has training interactions there, else the domain's own."""
        has = self.has
        assert isinstance(has, torch.Tensor)
        return torch.where(has[:, 1:], tu, su), torch.where(has[:, :1], su, tu)


class CDRIB(StagedRecommender):
    """CDRIB (Cao et al., ICDE 2022) as the authors' code trains it; see the module docstring."""

    def __init__(
        self, *, dim: int = 128, layers: int = 3, dropout: float = 0.3, leaky: float = 0.1, beta: float = 1.5,
        margin: float = 0.3, critic: str = "hinge", lr: float = 1e-3, weight_decay: float = 5e-4, batch_size: int = 1024,
        user_batch_size: int = 64, epochs: int = 100, patience: int | None = None, source: str | None = None,
    ) -> None:
        self.dim, self.layers, self.dropout, self.leaky, self.beta = dim, layers, dropout, leaky, beta
        self.margin, self.critic, self.lr, self.weight_decay = margin, critic, lr, weight_decay
        self.batch_size, self.user_batch_size, self.epochs = batch_size, user_batch_size, epochs
        self.patience = epochs if patience is None else patience
        self.source = source
        if critic not in CRITICS:
            raise CrossbenchError(f"model 'cdrib': critic {unknown_name_message('loss', critic, CRITICS)}")
        if min(dim, layers, batch_size, user_batch_size, epochs, self.patience) < 1:
            raise CrossbenchError(
                f"model 'cdrib': dim, layers, batch_size, user_batch_size, epochs and patience must be >= 1, got {self.settings()}"
            )
        if not (0.0 <= dropout < 1.0 and lr > 0 and weight_decay >= 0 and beta >= 0 and margin >= 0 and leaky >= 0):
            raise CrossbenchError(
                f"model 'cdrib': dropout must be in [0, 1), lr > 0 and weight_decay, beta, margin, leaky >= 0; "
                f"got dropout={dropout}, lr={lr}, weight_decay={weight_decay}, beta={beta}, margin={margin}, leaky={leaky}"
            )

    def settings(self) -> Mapping[str, Any]:
        return {"dim": self.dim, "layers": self.layers, "dropout": self.dropout, "leaky": self.leaky, "beta": self.beta,
                "margin": self.margin, "critic": self.critic, "lr": self.lr, "weight_decay": self.weight_decay,
                "batch_size": self.batch_size, "user_batch_size": self.user_batch_size, "epochs": self.epochs,
                "patience": self.patience, "source": self.source}

    def reads_source_domains(self) -> bool:
        return True

    def cold_users(self) -> str:
        return "from source-domain history (their source-domain latent scores the target items)"

    def build(self, split: FitSplit, env: RunEnv) -> CDRIBModule:
        self.sides = two_sides(split, self.source, model="cdrib")
        return CDRIBModule(self.sides, split.train.n_users, dim=self.dim, layers=self.layers, dropout=self.dropout,
                           leaky=self.leaky, beta=self.beta)

    def stages(self, split: FitSplit, model: nn.Module, env: RunEnv) -> Sequence[Stage]:
        source, target = self.sides
        rows = StageData({
            "user": torch.as_tensor(np.concatenate([source.users, target.users])),
            "item": torch.as_tensor(np.concatenate([source.items, target.items])),
            "domain": torch.cat([torch.zeros(len(source.users), dtype=torch.long), torch.ones(len(target.users), dtype=torch.long)]),
        })
        loss = JointLoss(self.sides, margin=self.margin, critic=self.critic, user_batch_size=self.user_batch_size,
                         device=env.device)
        return [Stage("joint", ("",), loss, rows, epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
                      weight_decay=self.weight_decay, stop=EarlyStopping(patience=self.patience))]

    def score_users(self, model: nn.Module, users: torch.Tensor) -> torch.Tensor:
        """Dot products of each user's target-domain row (their source latent when they have a source history)
        with every target item latent; the encoders' means (no dropout, no sampling) in evaluation."""
        assert isinstance(model, CDRIBModule)
        su, _, tu, ti, _, _ = model.encode()
        _, target_rows = model.domain_users(su, tu)
        return (target_rows[users] @ ti.T).float()


class UntakenItems:
    """Uniform draws among the items a user did not take in one side's training data (any item for a
    user who took them all), by redrawing the taken ones; membership through sorted ``user * (n + 1) + item`` keys."""

    def __init__(self, side: Side, device: torch.device) -> None:
        self.n = side.n_items
        pairs = np.unique(np.stack([side.users, side.items], 1), axis=0).reshape(-1, 2)
        self.keys = torch.as_tensor(pairs[:, 0] * (self.n + 1) + pairs[:, 1], device=device)
        self.full = torch.as_tensor(np.bincount(pairs[:, 0], minlength=len(side.indptr) - 1) >= self.n, device=device)

    def taken(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Whether each (user, item) pair is a training interaction."""
        if len(self.keys) == 0:
            return torch.zeros_like(users, dtype=torch.bool)
        key = users * (self.n + 1) + items
        at = torch.searchsorted(self.keys, key).clamp(max=len(self.keys) - 1)
        return self.keys[at] == key

    def draw(self, users: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """One item per user."""
        items = torch.randint(0, self.n, users.shape, generator=gen, device=users.device)
        redraw = self.taken(users, items) & ~self.full[users]
        while redraw.any():
            items[redraw] = torch.randint(0, self.n, (int(redraw.sum()),), generator=gen, device=users.device)
            redraw = self.taken(users, items) & ~self.full[users]
        return items


class JointLoss:
    """The sum of each domain's positive and negative log-losses, both KL terms and the critic's loss."""

    def __init__(self, sides: Sequence[Side], *, margin: float, critic: str, user_batch_size: int, device: torch.device) -> None:
        self.margin, self.critic, self.user_batch_size = margin, critic, user_batch_size
        self.negatives = [UntakenItems(side, device) for side in sides]

    def critic_loss(self, model: CDRIBModule, su: torch.Tensor, tu: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Overlapping users' own (source, target) pairs against pairs with a random user on either side."""
        overlap = model.overlap
        assert isinstance(overlap, torch.Tensor)
        k = min(self.user_batch_size, len(overlap))
        if k == 0:
            return su.new_zeros(())
        n, dev = len(su), su.device
        own = overlap[torch.randperm(len(overlap), generator=gen, device=dev)[:k]]
        other_t = torch.randperm(n, generator=gen, device=dev)[:k]
        other_s = torch.randperm(n, generator=gen, device=dev)[:k]
        pos = model.critic(torch.cat([su[own], tu[own]], 1)).view(-1)
        neg_1 = model.critic(torch.cat([su[own], tu[other_t]], 1)).view(-1)
        neg_2 = model.critic(torch.cat([su[other_s], tu[own]], 1)).view(-1)
        if self.critic == "bce":
            return (F.binary_cross_entropy_with_logits(pos, torch.ones_like(pos))
                    + F.binary_cross_entropy_with_logits(neg_1, torch.zeros_like(neg_1))
                    + F.binary_cross_entropy_with_logits(neg_2, torch.zeros_like(neg_2)))
        p = torch.sigmoid(pos)
        return (F.relu(self.margin - p + torch.sigmoid(neg_1)).mean() + F.relu(self.margin - p + torch.sigmoid(neg_2)).mean())

    def __call__(self, model: CDRIBModule, batch: Mapping[str, torch.Tensor], gen: torch.Generator) -> torch.Tensor:
        su, si, tu, ti, kl_s, kl_t = model.encode()
        rows = model.domain_users(su, tu)
        total = kl_s + kl_t + self.critic_loss(model, su, tu, gen)
        for d, items_latent in enumerate((si, ti)):
            mine = batch["domain"] == d
            if not mine.any():
                continue
            users, items = batch["user"][mine], batch["item"][mine]
            neg = self.negatives[d].draw(users, gen)
            u = rows[d][users]
            pos_logit, neg_logit = (u * items_latent[items]).sum(-1), (u * items_latent[neg]).sum(-1)
            total = total + F.binary_cross_entropy_with_logits(pos_logit, torch.ones_like(pos_logit))
            total = total + F.binary_cross_entropy_with_logits(neg_logit, torch.zeros_like(neg_logit))
        return total
