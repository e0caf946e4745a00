"""All-position (causal) training of composed models: one forward pass per user sequence.

Each user's history in a domain ``d`` is cut into windows of ``history_length`` items
(:func:`sequence_windows`), so every interaction is a target once per epoch. For a batch of
windows, the user encoder of ``d`` runs once over each left-padded window (``UserEncoder.forward_all``), giving the state after every
position. The state *before* position ``j`` (after positions ``< j``; absent for the first
item) is fused with the user's other domains and must rank the item at ``j``: every item of
the history is a training target in one pass, with no per-sample Python and the item
catalogue of each domain encoded once per step.

Cross-domain fusions also learn the cold-start case: with probability
``target_history_dropout`` a user's target history is hidden for the whole sequence, so all
of that user's target items are ranked from the other domains alone (and the first item of
every history is ranked with no target history at all). Target-only fusions skip positions
without any earlier target item (there is nothing to rank them from).

Losses over the fused vectors ``U`` ``[N, dim]`` and their target items ``y`` ``[N]``:

* ``full-softmax``: cross-entropy over the domain's whole catalogue;
* ``softmax``: sampled softmax against ``sampled_negatives`` items shared by the batch, drawn
  uniformly or by training popularity (``negative_sampling``), with the log-probability of
  drawing each candidate subtracted from its logit (the logQ correction; uniform draws
  subtract a constant) and accidental hits of the positive masked;
* ``bpr``: Bayesian personalised ranking against ``negatives`` uniform items per target.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from crossbench.plugin.modules import Fusion, ItemEncoder, Scorer, UserEncoder

if TYPE_CHECKING:
    from crossbench.train.settings import TrainConfig


def sequence_windows(interactions: pd.DataFrame, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every user's history cut into windows of ``length`` items, so that each interaction is a
    training target once per epoch: the most recent ``length`` items, the ``length`` before
    them, and so on. Returns the user of each window ``[W]`` and its items ``[W, length]``
    (oldest first, ``-1`` padding on the left of the oldest, shorter window)."""
    inter = interactions.sort_values(["user", "timestamp"], kind="stable")
    users, items = inter["user"].to_numpy(), inter["item"].to_numpy()
    if len(users) == 0:
        return torch.zeros(0, dtype=torch.long), torch.zeros(0, length, dtype=torch.long)
    ends = np.searchsorted(users, users, side="right")
    from_end = ends - 1 - np.arange(len(users))  # 0 for a user's most recent item
    window = from_end // length  # 0 for the most recent window
    column = length - 1 - from_end % length
    starts = np.r_[0, np.flatnonzero(np.diff(users)) + 1]
    per_user = window[starts] + 1  # windows of each user
    first = np.cumsum(np.r_[0, per_user[:-1]])  # row of each user's most recent window
    user_row = np.repeat(first, np.diff(np.r_[starts, len(users)]))
    rows = user_row + window
    out = np.full((int(per_user.sum()), length), -1, dtype=np.int64)
    out[rows, column] = items
    owner = np.repeat(users[starts], per_user)
    return torch.from_numpy(owner), torch.from_numpy(out)


def sequence_step(
    *,
    item_encoders: Mapping[str, ItemEncoder],
    user_encoders: Mapping[str, UserEncoder],
    fusion: Fusion,
    scorer: Scorer,
    histories: Mapping[str, torch.Tensor],
    item_log_probs: Mapping[str, torch.Tensor],
    domains: list[str],
    target: str,
    users: torch.Tensor,
    target_history: torch.Tensor,
    config: TrainConfig,
    generator: torch.Generator,
    catalogues: Mapping[str, torch.Tensor] | None = None,
    targets: torch.Tensor | None = None,
) -> tuple[torch.Tensor, int]:
    """The loss of one batch of sequences in ``target`` and the number of targets ranked.

    ``target_history`` ``[B, L]`` holds the windows to train on (left-padded item indices,
    ``-1`` padding) and ``users`` ``[B]`` their users; ``histories[d]`` ``[n_users, L_d]`` the
    users' most recent items in the other domains; ``domains`` are the domains the fusion
    reads; ``item_log_probs[d]`` ``[n_items]`` the log training popularity of each item (for
    popularity-sampled negatives); ``catalogues[d]``, when given, the item vectors of every
    domain read (else each encoder's ``all_items()``: data-parallel training passes them
    encoded block-wise over the ranks); ``targets`` ``[B, L]``, when given, the positions trained
    (``target_groups``: the others are read as history only).
    """
    fused, labels = fused_positions(
        item_encoders=item_encoders, user_encoders=user_encoders, fusion=fusion, histories=histories,
        domains=domains, target=target, users=users, target_history=target_history,
        dropout=config.target_history_dropout, generator=generator, catalogues=catalogues, targets=targets,
    )
    if labels.numel() == 0:
        return fused.sum() * 0.0, 0
    catalogue = item_encoders[target].all_items() if catalogues is None else catalogues[target]
    loss = ranking_loss(
        fused, labels, catalogue, scorer=scorer, config=config, log_probs=item_log_probs[target], generator=generator
    )
    return loss, int(labels.numel())


def fused_positions(
    *,
    item_encoders: Mapping[str, ItemEncoder],
    user_encoders: Mapping[str, UserEncoder],
    fusion: Fusion,
    histories: Mapping[str, torch.Tensor],
    domains: list[str],
    target: str,
    users: torch.Tensor,
    target_history: torch.Tensor,
    dropout: float,
    generator: torch.Generator | None,
    catalogues: Mapping[str, torch.Tensor] | None = None,
    targets: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fused user vectors ``[N, dim]`` before every target position that has an item (of ``targets``
    ``[B, L]`` only, when given), and those items ``[N]``."""
    hist = target_history  # [B, L]
    mask = hist >= 0
    if catalogues is None:
        catalogues = {d: item_encoders[d].all_items() for d in domains}
    x = catalogues[target][hist.clamp(min=0)]  # [B, L, dim]
    states = user_encoders[target].forward_all(users, x, mask)  # state after each position
    b, length, dim = x.shape
    queries = torch.cat([states.new_zeros(b, 1, dim), states[:, :-1]], dim=1)  # state before each position
    q_present = torch.cat([mask.new_zeros(b, 1), mask.cumsum(1)[:, :-1] > 0], dim=1)
    t_mask = mask
    if fusion.cross_domain and dropout > 0 and generator is not None:
        hide = torch.rand(b, generator=generator, device=users.device) < dropout
        q_present = q_present & ~hide.unsqueeze(1)
        t_mask = mask & ~hide.unsqueeze(1)
    queries = queries * q_present.unsqueeze(-1).to(queries.dtype)
    predict = mask if fusion.cross_domain else mask & q_present
    if targets is not None:
        predict = predict & targets
    vectors: dict[str, torch.Tensor] = {target: queries}
    present: dict[str, torch.Tensor] = {target: q_present}
    items: dict[str, torch.Tensor] = {target: x}
    item_masks: dict[str, torch.Tensor] = {target: t_mask}
    for d in domains:
        if d == target:
            continue
        h = histories[d][users]
        m = h >= 0
        xs = catalogues[d][h.clamp(min=0)]
        if fusion.item_level and not fusion.pooled_sources:
            vectors[d] = xs.new_zeros(b, dim)
        else:
            vectors[d] = user_encoders[d](users, xs, m)
        present[d], items[d], item_masks[d] = m.any(1), xs, m
    extra = {"items": items, "item_masks": item_masks} if fusion.item_level else {}
    if fusion.positions:
        return fusion(vectors, present, target, **extra)[predict], hist[predict]
    rows, cols = predict.nonzero(as_tuple=True)
    row_vectors = {d: (v[rows, cols] if d == target else v[rows]) for d, v in vectors.items()}
    row_present = {d: (p[rows, cols] if d == target else p[rows]) for d, p in present.items()}
    if fusion.item_level:
        earlier = torch.arange(length, device=users.device).unsqueeze(0) < cols.unsqueeze(1)  # k < j
        extra = {
            "items": {d: v[rows] for d, v in items.items()},
            "item_masks": {d: (m[rows] & earlier if d == target else m[rows]) for d, m in item_masks.items()},
        }
    return fusion(row_vectors, row_present, target, **extra), hist[rows, cols]


def ranking_loss(
    fused: torch.Tensor,
    labels: torch.Tensor,
    catalogue: torch.Tensor,
    *,
    scorer: Scorer,
    config: TrainConfig,
    log_probs: torch.Tensor,
    generator: torch.Generator,
) -> torch.Tensor:
    """``config.loss`` of user vectors ``fused`` ``[N, dim]`` ranking ``labels`` ``[N]`` in ``catalogue``."""
    n, n_items = labels.shape[0], catalogue.shape[0]
    device = fused.device
    if config.loss == "full-softmax":
        logits = scorer.score_all(fused, catalogue).float()
        loss = F.cross_entropy(logits, labels)
    elif config.loss == "softmax":
        s = config.sampled_negatives
        if config.negative_sampling == "popularity":
            neg = torch.multinomial(log_probs.exp(), s, replacement=True, generator=generator)
            correction = log_probs
        else:
            neg = torch.randint(0, n_items, (s,), generator=generator, device=device)
            correction = torch.zeros(n_items, device=device)
        pos = scorer(fused, catalogue[labels].unsqueeze(1)).float() - correction[labels].unsqueeze(1)  # [N, 1]
        negs = scorer.score_all(fused, catalogue[neg]).float() - correction[neg].unsqueeze(0)  # [N, S]
        negs = negs.masked_fill(neg.unsqueeze(0) == labels.unsqueeze(1), float("-inf"))
        loss = F.cross_entropy(torch.cat([pos, negs], dim=1), torch.zeros(n, dtype=torch.long, device=device))
    else:  # bpr
        neg = torch.randint(0, n_items, (n, config.negatives), generator=generator, device=device)
        s = scorer(fused, catalogue[torch.cat([labels.unsqueeze(1), neg], dim=1)]).float()
        loss = -F.logsigmoid(s[:, :1] - s[:, 1:]).mean()
    if config.l2 > 0:
        loss = loss + config.l2 * (fused.float().pow(2).sum() + catalogue[labels].float().pow(2).sum()) / n
    return loss
