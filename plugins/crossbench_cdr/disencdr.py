"""DisenCDR: disentangled domain-shared and domain-specific user representations for cross-domain recommendation.

Cao, Lin, Cong, Ya, Liu & Wang, "DisenCDR: Learning Disentangled Representations for
Cross-Domain Recommendation", SIGIR 2022. Each domain has a variational bipartite graph
encoder (VBGE) for its domain-specific user and item representations; a cross-domain VBGE
encodes the users' domain-shared representation from both graphs, mixed per user by the source
share of their interactions. Two mutual-information regularisers disentangle them: the shared
posterior is pulled towards each domain's own encoding of the shared part (one more VBGE per
domain, read on the domain-specific embeddings) and towards a fixed prior. A user's vector in
a domain is ``shared + specific``, scored against the domain's item vectors by a dot product.

What crossbench trains, as the authors' code (github.com/cjx96/DisenCDR) does
(:mod:`crossbench_cdr.disencdr_encoders` holds the encoders):

- tables (dimension ``dim``, standard normal): per domain, specific users, shared users and
  items; encoders: a specific VBGE per domain, a "shared" VBGE per domain (read for its user
  posterior only) and the cross VBGE, each with ``layers`` layers of hidden width ``hidden``,
  dropout ``dropout``, leaky-ReLU slope ``leaky``;
- the mix weight of a user is ``|S_u| / (|S_u| + |T_u|)`` (training interactions in the source
  and the target; 0.5 for a user with neither): the paper's per-user weight. ``share_rate=x``
  gives every user the weight ``x`` instead;
- training rows: every source and every target training interaction. A source row ``(u, i)``
  is a source positive beside one of ``u``'s target training items drawn uniformly as the target
  positive, and the other way round for a target row; each row draws one negative per domain,
  uniformly among the items ``u`` did not take there. The loss of a batch is the sum of four
  binary cross-entropies (source positives, source negatives, target positives, target
  negatives; each a mean over the batch rows whose user has training items in that domain), the
  two specific VBGEs' KL to the prior, and after the warm-up the shared part's
  ``(1 - beta) KL(shared || prior) + beta KL(shared || source's) + beta KL(shared || target's)``;
- the first ``warmup_epochs`` epochs train the specific part alone (the shared part neither adds
  to the user vectors nor to the loss); one Adam optimiser throughout; one stage, early stopping
  on the validation users (NDCG@``valid_k``).

Scoring: evaluation mode (no dropout, posterior means) of the full model; the target user
vector ``shared + specific`` times every target item vector. A cold user (no target history)
gets the mix weight 1: the shared representation is encoded from their source graph alone
(their shared table row is trained by the source loss); their target-specific part has no
target edges and reads only their own target table row through the encoder's biases and joins.

Differences from the authors' code:

- the mix weight: their code loops over the users and keeps the last user's share, so every
  user gets that one number; here each user has their own (the paper's definition);
  ``share_rate`` reproduces a single weight;
- their training rows are shuffled once, before the first epoch, the last batch padded by
  repeating the first rows; here rows are reshuffled every epoch and the last batch is short;
- their negative draw tries five times to avoid the user's items and then keeps the fifth draw;
  here negatives are uniform over the untaken items (never a training positive);
- users without training items in a domain (which their data, all overlapping users, lacks):
  their rows leave that domain's two cross-entropies out;
- repeated (user, item) interactions count once in the propagation matrices (their adjacency
  counts repeats); their code needs ``dim == hidden`` (the noise has ``hidden`` columns), here
  the noise has ``dim`` columns;
- they evaluate the TEST users every 10 epochs and keep no model (the paper reports the best
  test epoch); here early stopping reads the validation users and keeps the best epoch. Their
  learning-rate decay (x0.9 when the test score stops rising, after 10 evaluations) never acts
  within their 50 epochs and is not offered; their ``weight_decay`` option is never passed to
  the optimiser (0 here too); two unused linear layers of theirs are left out.

Differences from the paper: as in the authors' code, a training draw adds noise with standard
deviation ``exp(sigma)``, not ``sigma`` (``sigma = exp(0.1 + 0.9 softplus(l))``), the prior is
``N(0, 3.60^2)`` (their ``log-scale 1``), and the rows of the KL terms are averaged over all users.
With more than two domains the non-target domains form one source (:mod:`crossbench_cdr.sources`).

Defaults (the authors' ``train_rec.py``): ``dim=128``, ``hidden=128``, ``layers=2``,
``dropout=0.3``, ``leaky=0.1``, ``beta=0.9``, Adam ``lr=1e-3``, ``batch_size=1024``,
``epochs=50``, ``warmup_epochs=9`` (their ``epoch < 10``); ``patience=10``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from crossbench.data.protocols import FitSplit
from crossbench.errors import CrossbenchError
from crossbench.plugin.interfaces import RunEnv
from crossbench.train.stages import EarlyStopping, Stage, StageData, StagedRecommender
from crossbench_cdr.disencdr_encoders import CrossEncoder, Prop, SingleEncoder, gaussian_kl, row_normalised, sample
from crossbench_cdr.sources import Side, two_sides


class DisenCDRModule(nn.Module):
    """The tables and the five encoders; :meth:`forward` gives both domains' user and item vectors and the KL terms."""

    def __init__(self, sides: Sequence[Side], rate: torch.Tensor, *, dim: int, hidden: int, layers: int, dropout: float,
                 leaky: float, beta: float) -> None:
        super().__init__()
        n_users = len(rate)
        self.beta = beta
        self.register_buffer("rate", rate, persistent=False)
        for side in sides:
            users, items = torch.as_tensor(side.users), torch.as_tensor(side.items)
            for key, prop in (("uv", row_normalised(users, items, (n_users, side.n_items))),
                              ("vu", row_normalised(items, users, (side.n_items, n_users)))):
                with warnings.catch_warnings():  # torch calls its CSR support beta; the products here are tested
                    warnings.simplefilter("ignore", UserWarning)
                    csr, csr_t = prop.to_sparse_csr(), prop.t().coalesce().to_sparse_csr()
                self.register_buffer(f"{side.name}_{key}", csr, persistent=False)
                self.register_buffer(f"{side.name}_{key}_t", csr_t, persistent=False)
        self.tables = nn.ModuleDict({
            **{f"{s.name}_users": nn.Embedding(n_users, dim) for s in sides},
            **{f"{s.name}_shared": nn.Embedding(n_users, dim) for s in sides},
            **{f"{s.name}_items": nn.Embedding(s.n_items, dim) for s in sides},
        })
        settings: dict[str, Any] = {"dim": dim, "hidden": hidden, "layers": layers, "dropout": dropout, "leaky": leaky}
        self.specific = nn.ModuleDict({s.name: SingleEncoder(**settings) for s in sides})
        self.shared_own = nn.ModuleDict({s.name: SingleEncoder(**settings) for s in sides})
        self.cross = CrossEncoder(**settings)

    def graph(self, name: str) -> tuple[Prop, Prop]:
        """The domain's (``uv``, ``vu``) propagation matrices, each with its transpose."""
        uv, uv_t, vu, vu_t = (getattr(self, f"{name}_{key}") for key in ("uv", "uv_t", "vu", "vu_t"))
        return (uv, uv_t), (vu, vu_t)

    def table(self, name: str) -> torch.Tensor:
        """The weights of table ``name`` (e.g. ``"target_users"``)."""
        embedding = self.tables[name]
        assert isinstance(embedding, nn.Embedding)
        return embedding.weight

    def forward(self, shared: bool = True) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], torch.Tensor]:
        """``({domain: (user vectors, item vectors)}, KL terms)``; ``shared=False`` is the warm-up (specific part only)."""
        out, kl = {}, torch.zeros((), device=self.table("source_users").device)
        for name in ("source", "target"):
            uv, vu = self.graph(name)
            users, items, kl_d = self.specific[name](self.table(f"{name}_users"), self.table(f"{name}_items"), uv, vu)
            out[name] = (users, items)
            kl = kl + kl_d
        if not shared:
            return out, kl
        rate = self.rate
        assert isinstance(rate, torch.Tensor)
        graphs = (*self.graph("source"), *self.graph("target"))
        mean, log_scale = self.cross(self.table("source_shared"), self.table("target_shared"), graphs, rate)
        z, kl_prior = sample(mean, log_scale, self.training)
        kl = kl + (1 - self.beta) * kl_prior
        for name in ("source", "target"):
            encoder = self.shared_own[name]
            assert isinstance(encoder, SingleEncoder)
            own_mean, own_log = encoder.user_posterior(self.table(f"{name}_users"), *self.graph(name))
            kl = kl + self.beta * gaussian_kl(mean, log_scale, own_mean, own_log)
            users, items = out[name]
            out[name] = (z + users, items)
        return out, kl


class DisenCDR(StagedRecommender):
    """DisenCDR (Cao et al., SIGIR 2022) as the authors' code trains it; see the module docstring."""

    def __init__(
        self, *, dim: int = 128, hidden: int = 128, layers: int = 2, dropout: float = 0.3, leaky: float = 0.1,
        beta: float = 0.9, share_rate: float | None = None, lr: float = 1e-3, batch_size: int = 1024, epochs: int = 50,
        warmup_epochs: int = 9, patience: int = 10, valid_k: int = 10, source: str | None = None,
    ) -> None:
        self.dim, self.hidden, self.layers, self.dropout, self.leaky, self.beta = dim, hidden, layers, dropout, leaky, beta
        self.share_rate, self.lr, self.batch_size, self.epochs = share_rate, lr, batch_size, epochs
        self.warmup_epochs, self.patience, self.valid_k, self.source = warmup_epochs, patience, valid_k, source
        if min(dim, hidden, layers, batch_size, epochs, patience, valid_k) < 1 or warmup_epochs < 0:
            raise CrossbenchError(f"model 'disencdr': dim, hidden, layers, batch_size, epochs, patience and valid_k must be "
                                  f">= 1 and warmup_epochs >= 0, got {self.settings()}")
        if not (0.0 <= dropout < 1.0 and 0.0 <= beta <= 1.0 and leaky >= 0 and lr > 0):
            raise CrossbenchError(f"model 'disencdr': dropout must be in [0, 1), beta in [0, 1], leaky >= 0 and lr > 0, "
                                  f"got dropout={dropout}, beta={beta}, leaky={leaky}, lr={lr}")
        if share_rate is not None and not 0.0 <= share_rate <= 1.0:
            raise CrossbenchError(f"model 'disencdr': share_rate must be in [0, 1] or None (per-user weights), got {share_rate}")

    def settings(self) -> Mapping[str, Any]:
        return {"dim": self.dim, "hidden": self.hidden, "layers": self.layers, "dropout": self.dropout, "leaky": self.leaky,
                "beta": self.beta, "share_rate": self.share_rate, "lr": self.lr, "batch_size": self.batch_size,
                "epochs": self.epochs, "warmup_epochs": self.warmup_epochs, "patience": self.patience,
                "valid_k": self.valid_k, "source": self.source}

    def reads_source_domains(self) -> bool:
        return True

    def cold_users(self) -> str:
        return "from source-domain history (the shared representation encoded from their source graph)"

    def build(self, split: FitSplit, env: RunEnv) -> DisenCDRModule:
        self.sides = two_sides(split, self.source, model="disencdr")
        return DisenCDRModule(self.sides, self.mix_weights(), dim=self.dim, hidden=self.hidden, layers=self.layers,
                              dropout=self.dropout, leaky=self.leaky, beta=self.beta)

    def mix_weights(self) -> torch.Tensor:
        """``[n_users, 1]``: each user's source share of the shared representation (``share_rate`` when set)."""
        s, t = (side.counts().astype(np.float64) for side in self.sides)
        if self.share_rate is not None:
            return torch.full((len(s), 1), float(self.share_rate))
        total = s + t
        share = np.divide(s, total, out=np.full_like(s, 0.5), where=total > 0)
        return torch.as_tensor(share, dtype=torch.float32)[:, None]

    def stages(self, split: FitSplit, model: nn.Module, env: RunEnv) -> Sequence[Stage]:
        source, target = self.sides
        users = np.concatenate([source.users, target.users])
        items = np.concatenate([source.items, target.items])
        domain = np.concatenate([np.zeros(len(source.users), np.int64), np.ones(len(target.users), np.int64)])
        data = StageData({"user": torch.as_tensor(users), "item": torch.as_tensor(items), "domain": torch.as_tensor(domain)})
        batches = -(-len(data) // self.batch_size)
        loss = DisenLoss(self.sides, batches_per_epoch=batches, warmup_epochs=self.warmup_epochs, device=env.device)
        return [Stage("joint", ("",), loss, data, epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
                      stop=EarlyStopping(patience=self.patience, valid_k=self.valid_k))]

    def score_users(self, model: nn.Module, users: torch.Tensor) -> torch.Tensor:
        """The dot product of each user's target vector (shared + specific) with every target item vector."""
        assert isinstance(model, DisenCDRModule)
        out, _ = model(shared=True)
        user_vectors, items = out["target"]
        return (user_vectors[users] @ items.T).float()


class DisenLoss:
    """The batch loss of the module docstring; it counts its calls to know the epoch (warm-up or not)."""

    def __init__(self, sides: Sequence[Side], *, batches_per_epoch: int, warmup_epochs: int, device: torch.device) -> None:
        self.sides = {s.name: s for s in sides}
        self.batches, self.warmup, self.calls = batches_per_epoch, warmup_epochs, 0
        self.keys = {s.name: _pair_keys(s, device) for s in sides}

    def in_warmup(self) -> bool:
        """Whether the next batch belongs to one of the first ``warmup_epochs`` epochs."""
        return self.calls // self.batches < self.warmup

    def negatives(self, name: str, users: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """One item of side ``name`` per user, uniform over the items the user did not take in training
        (over every item for a user who took them all): draws that hit a taken item are redrawn."""
        n, keys = self.sides[name].n_items, self.keys[name]
        counts = torch.as_tensor(self.sides[name].counts(), device=users.device)[users]
        out = torch.randint(n, users.shape, generator=gen, device=users.device)
        redo = (counts < n) & _taken(keys, users * n + out)
        while bool(redo.any()):
            out[redo] = torch.randint(n, (int(redo.sum()),), generator=gen, device=users.device)
            redo = redo & _taken(keys, users * n + out)
        return out

    def __call__(self, model: DisenCDRModule, batch: Mapping[str, torch.Tensor], gen: torch.Generator) -> torch.Tensor:
        warm = self.in_warmup()
        self.calls += 1
        out, kl = model(shared=not warm)
        users, items, domain = batch["user"], batch["item"], batch["domain"]
        total = kl
        for code, name in enumerate(("source", "target")):
            own = domain == code
            drawn, has = self.sides[name].sample_own(users, gen)
            pos = torch.where(own, items, drawn)
            neg = self.negatives(name, users, gen)
            keep = own | has
            if not bool(keep.any()):
                continue
            u_vec, i_vec = out[name]
            u = u_vec[users[keep]]
            pos_logit = (u * i_vec[pos[keep]]).sum(-1)
            neg_logit = (u * i_vec[neg[keep]]).sum(-1)
            total = total + F.binary_cross_entropy_with_logits(pos_logit, torch.ones_like(pos_logit))
            total = total + F.binary_cross_entropy_with_logits(neg_logit, torch.zeros_like(neg_logit))
        return total


def _pair_keys(side: Side, device: torch.device) -> torch.Tensor:
    """Sorted ``user * n_items + item`` of the side's distinct training pairs."""
    keys = np.unique(side.users.astype(np.int64) * side.n_items + side.items)
    return torch.as_tensor(keys, device=device)


def _taken(keys: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
    """Whether each query key is one of the sorted ``keys``."""
    if len(keys) == 0:
        return torch.zeros_like(queries, dtype=torch.bool)
    at = torch.searchsorted(keys, queries).clamp(max=len(keys) - 1)
    return keys[at] == queries
