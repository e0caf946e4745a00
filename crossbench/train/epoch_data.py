"""The tensors a composed model's fit draws its batches from, built once per fit.

Pair training reads each domain's (user, item) training interactions; sequence training
reads each domain's history windows (:func:`crossbench.train.sequences.sequence_windows`),
the indices its batches draw from, and the log training popularity of its items (for
popularity-sampled negatives). With ``target_groups`` k above 1, an epoch lists each window k
times (:func:`epoch_batches`) and each listing trains a random 1/k of its positions
(:func:`batch_windows`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

from crossbench.data.protocols import FitSplit
from crossbench.train.sequences import sequence_windows


def training_pairs(split: FitSplit, domains: list[str], device: torch.device) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Each domain's training users and items, as two aligned index tensors."""
    inter = {d: split.train.domain(d).interactions for d in domains}
    return {d: (torch.as_tensor(i["user"].to_numpy().copy(), device=device), torch.as_tensor(i["item"].to_numpy().copy(), device=device))
            for d, i in inter.items()}


def sequence_data(
    split: FitSplit, domains: list[str], length: int, item_counts: Mapping[str, torch.Tensor], device: torch.device
) -> tuple[dict[str, list[torch.Tensor]], dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Each domain's history windows ``[users, items]`` of ``length`` items, the window indices
    batches draw from, and each domain's log training popularity (counts floored at 0.5)."""
    windows = {d: [t.to(device) for t in sequence_windows(split.train.domain(d).interactions, length)] for d in domains}
    pools = {d: torch.arange(len(windows[d][0]), device=device) for d in domains}
    log_probs = {d: torch.log(c.clamp(min=0.5) / c.clamp(min=0.5).sum()) for d, c in item_counts.items()}
    return windows, pools, log_probs


def epoch_batches(
    domains: list[str], pools: dict[str, torch.Tensor] | None, pairs: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
    batch_size: int, target_groups: int, gen: torch.Generator, device: torch.device,
) -> list[tuple[str, torch.Tensor]]:
    """Every domain's shuffled mini-batches of one epoch: indices of history windows (``pools``; with
    ``target_groups`` k above 1, each window listed k times as ``window * k + copy``, k times as
    many entries per batch) or of pairs."""
    batches = []
    k = target_groups if pools is not None else 1  # each window's k listings: window * k + copy
    for d in domains:
        n = (len(pools[d]) if pools is not None else len(pairs[d][0])) * k
        perm = torch.randperm(n, generator=gen, device=device)
        if pools is not None:
            perm = pools[d][perm // k] * k + perm % k  # k = 1: pools[d][perm]
        batches += [(d, perm[s : s + batch_size * k]) for s in range(0, n, batch_size * k)]
    return batches


def batch_windows(
    batch: torch.Tensor, items: torch.Tensor, k: int, gen: torch.Generator, local: Callable[..., torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """This rank's windows of one batch and the positions each trains (``None``: every position).

    ``items`` ``[W, L]`` holds a domain's windows (``-1`` padding). With ``k`` 1 the batch lists
    windows, each trained at every position. With ``k`` above 1 it lists ``window * k + copy``
    (:func:`epoch_batches`: each window ``k`` times an epoch), and each entry trains a random
    ``1/k`` of its window's positions, drawn afresh for every entry from ``gen`` (the generator
    every rank shares for the batch order, so all ranks draw alike): each target is trained once
    an epoch in expectation. ``local(batch, work=...)`` gives this rank's share
    (:meth:`crossbench.train.distributed.Ranks.local`), dealt by each entry's targets."""
    if k == 1:
        return local(batch, work=(items[batch] >= 0).sum(1)), None
    window = batch // k
    drawn = torch.randint(0, k, (len(batch), items.shape[1]), generator=gen, device=batch.device) == 0
    train = drawn & (items[window] >= 0)
    mine = local(torch.arange(len(batch), device=batch.device), work=train.sum(1))
    return window[mine], train[mine]
