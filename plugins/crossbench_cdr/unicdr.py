"""UniCDR: universal cross-domain recommendation with domain-specific and domain-shared user views.

Cao, Li, Yu, Guo, Liu & Wang, "Towards Universal Cross-Domain Recommendation", WSDM 2023.
Every domain has its own user and item embeddings; one more user table and one more
aggregator are shared by all domains. A user's vector in domain ``d`` is the sum of two views:

- the domain-specific view: ``a_d(E_d[u], items of u in d)``;
- the domain-shared view: ``a_s(S[u], items of u in every domain)``, where during training the
  user's items of ``d`` itself are masked out (the paper's domain mask), so the shared view must
  predict ``d`` from the other domains;

each aggregator being ``lambda_a * id + (1 - lambda_a) * W(pool(item embeddings))`` with
``pool`` the mean (``aggregator="mean"``) or an attention whose query is the id embedding
(``"user_attention"``). The score is the dot product with the domain's item embedding. Each
domain's loss is ``lambda_loss * (BCE(positive) + BCE(negatives)) + (1 - lambda_loss) * critic``,
the critic a bilinear discriminator per domain that tells a user's (specific, shared) pair from
the pair whose specific view belongs to another user of the batch (the contrastive term that
keeps the two views informative of each other); one optimiser step takes one batch of every
domain and the sum of their losses.

What crossbench trains, as the authors' code (cjx96/UniCDR, ``dual-user-intra`` with
``--static_sample``) does: every domain of the split trains; each training interaction is drawn
once (with the seed) with its ``negatives`` items of the domain that the user never trained on
(uniform over the domain's training items), its own-domain context (``min(history_length,
int(0.9 n))`` of the user's ``n`` items there, the positive removed; ``mask_rate=0.1``) and each
other domain's context (as many of the user's items there); these static samples are reused
every epoch. An epoch is ``steps`` steps of ``batch_size`` random interactions per domain.
Scoring reads up to ``eval_history`` of the user's training items per domain (a seeded random
sample, as the authors' test mode draws), the shared view reading every domain, the target's too.

A user with no training interaction in the target (a cold user) is scored through the shared
view alone: the shared user embedding, trained by the source domains' losses, aggregated with
their source items. (The authors' code has no separate path for them in this task: their
specific view reads an empty history and a target user row that only Adam's weight decay
touches, which drives it toward zero; here that part is left out.)

Differences from the authors' code, and why:

- the learning rate is not decayed (theirs: times 0.98 after epoch 10 whenever no domain's
  validation NDCG@10 improved); crossbench validates every epoch (theirs: every 5 epochs, on
  sampled negatives, never stopping) and stops after ``patience`` epochs without a better
  validation NDCG@10 (full ranking), keeping the best epoch's weights;
- a batch is ``batch_size`` interactions of each domain drawn without repeats within an epoch
  (theirs: once the first pass ends, each step takes the first batch of a freshly shuffled
  loader); its static samples are drawn before training (theirs: at first use);
- the ``item_similarity`` aggregator (EASE scores as pooling weights) is not offered, nor their
  other tasks' variants (``dual-user-inter``'s split shared/local user tables, the multi-domain
  tasks' warm-up); with more than two domains every domain is trained as in the dual task;
- the cold user's target-specific view is dropped explicitly (see above).

Differences from the paper: none in the model; the paper's masked-interaction and
domain-masking rates are the code's ``mask_rate`` (0.1) and the full own-domain mask.

Defaults (the authors' ``train_rec.py``): ``dim=128``, ``aggregator="mean"``, ``lambda_a=0.5``,
``lambda_loss=0.4``, ``dropout=0.3``, ``negatives=10``, ``history_length=10``,
``eval_history=50``, ``mask_rate=0.1``, Adam ``lr=1e-3`` with ``weight_decay=1e-5``,
``batch_size=512`` per domain (their 1024 split over the two domains), ``steps=500`` per epoch,
``epochs=100``; ``patience=10`` is crossbench's. Torch's default initialisation, as theirs.

Python API: ``UniCDR(**hyperparameters).fit(fit_split, env=RunEnv(registry=None, seed=s))``, then
``score(users)``; ``model.model.views(d, users, context, others)`` gives the two views.
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
from crossbench.train.stages import EarlyStopping, Stage, StageData, StagedRecommender
from crossbench_cdr.bilinear import bilinear
from crossbench_cdr.unicdr_samples import DomainItems, domain_items, eval_contexts, static_samples

AGGREGATORS = ("mean", "user_attention")


class Aggregator(nn.Module):
    """``lambda_a * id + (1 - lambda_a) * W(pool(items))``; padded positions (item 0) hold the zero vector."""

    def __init__(self, dim: int, kind: str, lambda_a: float, dropout: float) -> None:
        super().__init__()
        self.kind, self.lambda_a = kind, lambda_a
        self.w_agg = nn.Linear(dim, dim, bias=False)
        if kind == "user_attention":
            self.w_att = nn.Sequential(nn.Linear(dim, dim), nn.Tanh())
            self.att_dropout = nn.Dropout(dropout)

    def forward(self, ids: torch.Tensor, seq: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``ids [B, dim]``, ``seq [B, L, dim]``, ``mask [B, L]`` (True: a real item)."""
        if self.kind == "mean":
            # a padded position's vector is the zero row (the item tables' padding row never trains), so summing
            # ``seq`` is bit-for-bit summing ``seq * mask``, without a [B, L, dim] product each way
            pooled = seq.sum(1) / (mask.float().sum(1, keepdim=True) + 1e-12)
        else:
            # as the authors' masked softmax: a padded position gets logit 0, so it still counts
            # exp(0) in the denominator while adding nothing (its vector is zero) to the sum
            logits = torch.bmm(self.w_att(seq), ids[..., None]).squeeze(-1).masked_fill(~mask, 0.0)
            e = torch.exp(logits)
            att = self.att_dropout(e / (e.sum(1, keepdim=True) + 1e-12))
            pooled = torch.bmm(att[:, None, :], seq).squeeze(1)
        return self.lambda_a * ids + (1 - self.lambda_a) * self.w_agg(pooled)


class UniCDRModule(nn.Module):
    """Per-domain user and item tables, aggregators and critics; one shared user table and aggregator."""

    def __init__(self, has: torch.Tensor, n_items: Sequence[int], dim: int, aggregator: str, lambda_a: float,
                 dropout: float) -> None:
        super().__init__()
        n_users, n_domains = has.shape
        #: ``[n_users, n_domains]`` bool: the user has training interactions in the domain
        self.register_buffer("has", has)
        #: where each domain's item table starts in the tables stacked in domain order
        self.item_offsets = torch.tensor([0, *np.cumsum([n + 1 for n in n_items])[:-1].tolist()])
        self.dropout = dropout
        self.users = nn.ModuleList(nn.Embedding(n_users, dim) for _ in range(n_domains))
        self.items = nn.ModuleList(nn.Embedding(n + 1, dim, padding_idx=0) for n in n_items)  # item i is row i + 1
        self.aggregators = nn.ModuleList(Aggregator(dim, aggregator, lambda_a, dropout) for _ in range(n_domains))
        self.critics = nn.ModuleList(nn.Bilinear(dim, dim, 1) for _ in range(n_domains))
        self.shared_users = nn.Embedding(n_users, dim)
        self.shared_aggregator = Aggregator(dim, aggregator, lambda_a, dropout)

    def views(self, d: int, users: torch.Tensor, context: torch.Tensor, others: Sequence[torch.Tensor]
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """(specific, shared) views in domain ``d``: ``context [B, L]`` the user's items of ``d`` (row ids,
        0 = padding), ``others[k] [B, L_k]`` their items of domain ``k`` for every domain, as the shared view reads."""
        specific = self.aggregators[d](self.users[d](users), self.items[d](context), context > 0)
        # one lookup in the stacked item tables (every padding position reads row 0, table 0's zero padding row)
        # gives the concatenation of the per-domain lookups, values and gradients alike, without copying it
        offsets = self.item_offsets.tolist()
        rows = torch.cat([torch.where(ctx > 0, ctx + off, 0) for ctx, off in zip(others, offsets)], 1)
        stacked = torch.cat([cast(nn.Embedding, table).weight for table in self.items])
        seq = F.embedding(rows, stacked, padding_idx=0)
        shared = self.shared_aggregator(self.shared_users(users), seq, rows > 0)
        p = self.dropout if self.training else 0.0
        return F.dropout(specific, p), F.dropout(shared, p)

    def item_vectors(self, d: int, rows: torch.Tensor) -> torch.Tensor:
        return F.dropout(self.items[d](rows), self.dropout if self.training else 0.0)


class UniCDR(StagedRecommender):
    """UniCDR (Cao et al., WSDM 2023) as the authors' code trains it; see the module docstring."""

    def __init__(
        self, *, dim: int = 128, aggregator: str = "mean", lambda_a: float = 0.5, lambda_loss: float = 0.4,
        dropout: float = 0.3, negatives: int = 10, history_length: int = 10, eval_history: int = 50,
        mask_rate: float = 0.1, lr: float = 1e-3, weight_decay: float = 1e-5, batch_size: int = 512, steps: int = 500,
        epochs: int = 100, patience: int = 10,
    ) -> None:
        self.dim, self.aggregator, self.lambda_a, self.lambda_loss, self.dropout = dim, aggregator, lambda_a, lambda_loss, dropout
        self.negatives, self.history_length, self.eval_history, self.mask_rate = negatives, history_length, eval_history, mask_rate
        self.lr, self.weight_decay, self.batch_size, self.steps = lr, weight_decay, batch_size, steps
        self.epochs, self.patience = epochs, patience
        if aggregator not in AGGREGATORS:
            raise CrossbenchError(f"model 'unicdr': aggregator {unknown_name_message('aggregator', aggregator, AGGREGATORS)}")
        if min(dim, negatives, history_length, eval_history, batch_size, steps, epochs, patience) < 1:
            raise CrossbenchError(
                "model 'unicdr': dim, negatives, history_length, eval_history, batch_size, steps, epochs and patience "
                f"must be >= 1, got {self.settings()}"
            )
        if not (0 <= lambda_a <= 1 and 0 <= lambda_loss <= 1 and 0 <= dropout < 1 and 0 <= mask_rate < 1
                and lr > 0 and weight_decay >= 0):
            raise CrossbenchError(
                "model 'unicdr': lambda_a and lambda_loss must be in [0, 1], dropout and mask_rate in [0, 1), lr > 0 and "
                f"weight_decay >= 0, got {self.settings()}"
            )

    def settings(self) -> Mapping[str, Any]:
        return {"dim": self.dim, "aggregator": self.aggregator, "lambda_a": self.lambda_a, "lambda_loss": self.lambda_loss,
                "dropout": self.dropout, "negatives": self.negatives, "history_length": self.history_length,
                "eval_history": self.eval_history, "mask_rate": self.mask_rate, "lr": self.lr,
                "weight_decay": self.weight_decay, "batch_size": self.batch_size, "steps": self.steps,
                "epochs": self.epochs, "patience": self.patience}

    def reads_source_domains(self) -> bool:
        return True

    def cold_users(self) -> str:
        return "from source-domain history (the domain-shared view: shared user embedding and source items)"

    def build(self, split: FitSplit, env: RunEnv) -> UniCDRModule:
        names = list(split.train.domain_names)
        self.target_index = names.index(split.target)
        self.domains: list[DomainItems] = [domain_items(split, d) for d in names]
        self.seed = env.seed
        has = torch.as_tensor(np.stack([dom.indptr[1:] > dom.indptr[:-1] for dom in self.domains], 1))
        return UniCDRModule(has, [dom.n_items for dom in self.domains], self.dim, self.aggregator, self.lambda_a, self.dropout)

    def stages(self, split: FitSplit, model: nn.Module, env: RunEnv) -> Sequence[Stage]:
        rng = np.random.default_rng(env.seed)
        samples = [static_samples(self.domains, d, rng, negatives=self.negatives, length=self.history_length,
                                  mask_rate=self.mask_rate, device=env.device) for d in range(len(self.domains))]
        loss = _UniLoss(samples, self.lambda_loss)
        return [Stage(
            "joint", ("",), loss, StageData({"row": torch.arange(self.steps * self.batch_size)}), epochs=self.epochs,
            batch_size=self.batch_size, lr=self.lr, weight_decay=self.weight_decay, stop=EarlyStopping(patience=self.patience),
        )]

    def score_users(self, model: nn.Module, users: torch.Tensor) -> torch.Tensor:
        """Dot products of each user's target vector (specific view where they have target history, plus the
        shared view) with every target item."""
        assert isinstance(model, UniCDRModule) and isinstance(model.has, torch.Tensor)
        t = self.target_index
        ctx = eval_contexts(self.domains, users.cpu().numpy(), length=self.eval_history, seed=self.seed)
        ctx = [c.to(users.device) for c in ctx]
        specific, shared = model.views(t, users, ctx[t], ctx)
        u = specific * model.has[users, t : t + 1] + shared
        table = model.items[t]
        assert isinstance(table, nn.Embedding)
        return (u @ table.weight[1:].T).float()


class _UniLoss:
    """The sum over domains of ``lambda_loss * (BCE_pos + BCE_neg) + (1 - lambda_loss) * critic``; batch row ``r``
    reads static sample ``r mod n_d`` of domain ``d``."""

    def __init__(self, samples: Sequence[Mapping[str, Any]], lambda_loss: float) -> None:
        self.samples, self.lambda_loss = samples, lambda_loss

    def domain_loss(self, model: UniCDRModule, d: int, rows: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        s = self.samples[d]
        users = s["user"][rows]
        specific, shared = model.views(d, users, s["context"][rows], [o[rows] for o in s["others"]])
        u = specific + shared
        pos = (u * model.item_vectors(d, s["item"][rows])).sum(-1)
        neg = (u[:, None, :] * model.item_vectors(d, s["negatives"][rows])).sum(-1)
        rec = F.binary_cross_entropy_with_logits(pos, torch.ones_like(pos)) + \
            F.binary_cross_entropy_with_logits(neg, torch.zeros_like(neg))
        critic = model.critics[d]
        assert isinstance(critic, nn.Bilinear)
        return self.lambda_loss * rec + (1 - self.lambda_loss) * critic_loss(critic, specific, shared, gen)

    def __call__(self, model: nn.Module, batch: Mapping[str, torch.Tensor], gen: torch.Generator) -> torch.Tensor:
        assert isinstance(model, UniCDRModule)
        total = torch.zeros((), device=batch["row"].device)
        for d, s in enumerate(self.samples):
            if len(s["user"]):
                total = total + self.domain_loss(model, d, batch["row"] % len(s["user"]), gen)
        return total


def critic_loss(critic: nn.Bilinear, specific: torch.Tensor, shared: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """BCE of the critic on the true (specific, shared) pairs (label 1) and on pairs whose specific view is
    the one ``shift`` rows further in the batch (label 0), ``shift`` uniform in ``[1, B)``; 0 for ``B < 2``."""
    b = len(specific)
    if b < 2:
        return torch.zeros((), device=specific.device)
    shift = int(torch.randint(1, b, (1,), generator=gen, device=gen.device).item())
    other = (torch.arange(b, device=specific.device) + shift) % b
    pos, neg = bilinear(critic, specific, shared).view(-1), bilinear(critic, specific[other], shared).view(-1)
    return F.binary_cross_entropy_with_logits(pos, torch.ones_like(pos)) + \
        F.binary_cross_entropy_with_logits(neg, torch.zeros_like(neg))
