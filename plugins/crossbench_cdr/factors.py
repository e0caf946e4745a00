"""What EMCDR and PTUPCDR share: per-domain latent factors, their pretraining stages, cold-user scoring.

Both models first learn a matrix factorisation in each domain (the source side is every
non-target domain pooled into one catalogue unless ``source`` names one; see
:func:`crossbench_cdr.sources.two_sides`), then learn, with those factors frozen, how to
carry a user's source factors into the target domain. They differ only in that transfer
(:meth:`FactorModel.transfer`).

Objectives (``objective``):

- ``"rating"``: MSE between the dot product ``u . v`` and the rating, as the PTUPCDR
  authors' code trains both models (needs a ``rating`` column in every domain);
- ``"ranking"``: BPR (Rendle et al., UAI 2009) with one uniformly sampled negative per
  positive, for implicit-feedback data (the harness's ranking protocols). EMCDR's paper names
  BPR-MF as one of its two latent factor models.

Scoring a user: target factors where the user has target training interactions; the
transferred source factors where they have source interactions only (the cold-start case
both papers address); the target items' training popularity where they have neither.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from crossbench.data.protocols import FitSplit
from crossbench.errors import CrossbenchError, unknown_name_message
from crossbench.plugin.interfaces import RunEnv
from crossbench.train.stages import Batch, Stage, StageData, StagedRecommender
from crossbench_cdr.sources import Side, rated, two_sides

OBJECTIVES = ("rating", "ranking")


class MF(nn.Module):
    """One domain's user and item factors (no biases, as in the PTUPCDR authors' MF)."""

    def __init__(self, n_users: int, n_items: int, dim: int, init_std: float) -> None:
        super().__init__()
        self.user = nn.Embedding(n_users, dim)
        self.item = nn.Embedding(n_items, dim)
        nn.init.normal_(self.user.weight, std=init_std)
        nn.init.normal_(self.item.weight, std=init_std)


class FactorModel(nn.Module):
    """Source and target factors plus per-user flags; subclasses add the transfer's parameters."""

    warm: torch.Tensor
    has_source: torch.Tensor
    popularity: torch.Tensor

    def __init__(self, *, n_users: int, source: Side, target: Side, dim: int, init_std: float) -> None:
        super().__init__()
        self.source = MF(n_users, source.n_items, dim, init_std)
        self.target = MF(n_users, target.n_items, dim, init_std)
        self.register_buffer("warm", torch.as_tensor(target.counts() > 0))
        self.register_buffer("has_source", torch.as_tensor(source.counts() > 0))
        self.register_buffer("popularity", torch.as_tensor(np.bincount(target.items, minlength=target.n_items), dtype=torch.float32))

    def transfer(self, users: torch.Tensor) -> torch.Tensor:
        """Target-space vectors ``[B, dim]`` of ``users`` computed from their source side only."""
        raise NotImplementedError

    def user_vectors(self, users: torch.Tensor) -> torch.Tensor:
        own = self.target.user(users)
        moved = self.transfer(users).to(own.dtype)
        return torch.where(self.warm[users][:, None], own, moved)

    def scores(self, users: torch.Tensor) -> torch.Tensor:
        s = (self.user_vectors(users) @ self.target.item.weight.T).float()
        none = ~(self.warm[users] | self.has_source[users])
        return torch.where(none[:, None], self.popularity[None, :], s)


def rating_loss(user: torch.Tensor, item: torch.Tensor, rating: torch.Tensor) -> torch.Tensor:
    """Mean squared error of ``u . v`` against the ratings."""
    return F.mse_loss((user * item).sum(-1).float(), rating.float())


def bpr_loss(user: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """BPR: ``-log sigmoid(u . v_pos - u . v_neg)``, averaged."""
    return -F.logsigmoid(((user * pos).sum(-1) - (user * neg).sum(-1)).float()).mean()


def pairs_data(side: Side, *, objective: str, model: str, users: np.ndarray | None = None) -> StageData:
    """A side's training rows (``user``, ``item``, and ``rating`` for the rating objective), optionally of ``users`` only."""
    keep = np.ones(len(side.users), dtype=bool) if users is None else np.isin(side.users, users)
    cols = {"user": torch.as_tensor(side.users[keep]), "item": torch.as_tensor(side.items[keep])}
    if objective == "rating":
        cols["rating"] = torch.as_tensor(rated(side, model=model)[keep])
    if not keep.any():
        raise CrossbenchError(f"model {model!r}: no {side.name} training interactions to train on")
    return StageData(cols)


def mf_loss(part: str, n_items: int, objective: str):  # noqa: ANN201 - a LossFn
    """The loss of one domain's MF stage: MSE on ratings, or BPR with one uniform negative."""

    def loss(model: FactorModel, batch: Batch, gen: torch.Generator) -> torch.Tensor:
        mf: MF = getattr(model, part)
        u = mf.user(batch["user"])
        if objective == "rating":
            return rating_loss(u, mf.item(batch["item"]), batch["rating"])
        neg = torch.randint(0, n_items, (len(u),), generator=gen, device=u.device)
        return bpr_loss(u, mf.item(batch["item"]), mf.item(neg))

    return loss


class FactorRecommender(StagedRecommender):
    """The shared settings, sides and pretraining stages of EMCDR and PTUPCDR."""

    name = ""

    def __init__(
        self, *, objective: str, source: str | None, dim: int, lr: float, weight_decay: float, epochs: int,
        batch_size: int, patience: int, valid_k: int,
    ) -> None:
        if objective not in OBJECTIVES:
            raise CrossbenchError(f"model {self.name!r}: " + unknown_name_message("objective", objective, OBJECTIVES))
        bad = {k: v for k, v in (("dim", dim), ("epochs", epochs), ("batch_size", batch_size), ("patience", patience),
                                 ("valid_k", valid_k)) if v < 1}
        if bad or not lr > 0 or weight_decay < 0:
            raise CrossbenchError(f"model {self.name!r}: dim, epochs, batch_size, patience, valid_k must be >= 1, lr > 0, "
                                  f"weight_decay >= 0; got {bad or {'lr': lr, 'weight_decay': weight_decay}}")
        self.objective, self.source_domain, self.dim = objective, source, dim
        self.lr, self.weight_decay, self.epochs, self.batch_size = lr, weight_decay, epochs, batch_size
        self.patience, self.valid_k = patience, valid_k

    def settings(self) -> Mapping[str, Any]:
        return {k: getattr(self, k) for k in ("objective", "dim", "lr", "weight_decay", "epochs", "batch_size",
                                              "patience", "valid_k")} | {"source": self.source_domain}

    def describe(self) -> dict[str, Any]:
        return {"model": self.name, "training": dict(self.settings())}

    def reads_source_domains(self) -> bool:
        return True

    def cold_users(self) -> str:
        return "from source-domain history"

    def init_std(self) -> float:
        """nn.Embedding's N(0, 1) for ratings (as the authors' code); N(0, 0.1) for BPR."""
        return 1.0 if self.objective == "rating" else 0.1

    def sides(self, split: FitSplit) -> tuple[Side, Side]:
        return two_sides(split, self.source_domain, model=self.name)

    def pretraining(self, source: Side, target: Side) -> list[Stage]:
        """Target MF, then source MF, each for ``epochs`` (as the authors' code: a fixed count)."""
        return [
            Stage(f"{part}-factors", (f"{part}.",), mf_loss(part, side.n_items, self.objective),
                  pairs_data(side, objective=self.objective, model=self.name), self.epochs, batch_size=self.batch_size,
                  lr=self.lr, weight_decay=self.weight_decay)
            for part, side in (("target", target), ("source", source))
        ]

    def score_users(self, model: torch.nn.Module, users: torch.Tensor) -> torch.Tensor:
        assert isinstance(model, FactorModel)
        return model.scores(users)

    def overlap(self, source: Side, target: Side) -> np.ndarray:
        """Users with training interactions on both sides (never a cold-start validation or test user)."""
        users = np.flatnonzero((source.counts() > 0) & (target.counts() > 0)).astype(np.int64)
        if len(users) == 0:
            raise CrossbenchError(f"model {self.name!r}: no user has training interactions in both the source and the target domain")
        return users

    def predict(self, users: np.ndarray | torch.Tensor, items: np.ndarray | torch.Tensor) -> torch.Tensor:
        """``u . v`` per (user, target item) pair, cold users with their transferred factors (float32, CPU):
        a predicted rating under ``objective="rating"``."""
        model = self.model
        if not isinstance(model, FactorModel):
            raise CrossbenchError(f"model {self.name!r}: predict() called before fit()")
        device = model.target.item.weight.device
        u, i = (torch.as_tensor(_writable(x), dtype=torch.long, device=device) for x in (users, items))
        with torch.no_grad():
            return (model.user_vectors(u) * model.target.item(i)).sum(-1).float().cpu()

    def predicts_ratings(self) -> bool:
        """True under ``objective="rating"`` only: trained by MSE on the ratings, ``u . v`` estimates a rating."""
        return self.objective == "rating"

    def predict_ratings(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """:meth:`predict` (the rating task's estimate under ``objective="rating"``)."""
        return self.predict(users, items)

    def check(self, env: RunEnv, *, where: str) -> None:
        """Settings were checked at construction; nothing to resolve."""


def _writable(x: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """``x``, copied only when it is a read-only array (torch cannot wrap one without a warning)."""
    return x.copy() if isinstance(x, np.ndarray) and not x.flags.writeable else x
