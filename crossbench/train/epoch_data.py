"""The tensors a composed model's fit draws its batches from, built once per fit.

Pair training reads each domain's (user, item) training interactions; sequence training
reads each domain's history windows (:func:`crossbench.train.sequences.sequence_windows`),
the indices its batches draw from, and the log training popularity of its items (for
popularity-sampled negatives).
"""

from __future__ import annotations

from collections.abc import Mapping

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
