"""Binary DCG@K from the ranks of the relevant items."""

from __future__ import annotations

import torch


def dcg(ranks: torch.Tensor, n_relevant: torch.Tensor, k: int) -> torch.Tensor:
    """``ranks`` [users, R]: 0-based rank of each relevant item, in no particular order, ``inf``
    past the top K and for padding; ``1 / log2(inf + 2)`` is 0, so no mask is needed."""
    return (1.0 / torch.log2(ranks + 2.0)).sum(1)
