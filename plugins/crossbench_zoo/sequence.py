"""Sequence user encoders: a GRU and a causal Transformer with positions, one per domain.

Histories arrive oldest first and left-padded, and the trainer may mask positions inside
them (the item being ranked). Both encoders first pack the kept items to the right end of
the sequence (order preserved) and drop all-padding columns, then read the representation
at the last position, i.e. after the most recent item. A user with no history gets zeros.
"""

from __future__ import annotations

import torch
from torch import nn

from crossbench.interfaces import BuildContext, UserEncoder


def pack_right(history: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Move kept positions to the right end (order kept), trim padding columns shared by all rows."""
    order = torch.argsort(mask.to(torch.int8), dim=1, stable=True)  # padding first, kept items after
    history = history.gather(1, order.unsqueeze(-1).expand_as(history))
    mask = mask.gather(1, order)
    width = max(int(mask.sum(1).max()) if mask.numel() else 0, 1)
    return history[:, -width:], mask[:, -width:]


class GruUserEncoder(UserEncoder):
    """A GRU over the history; the last hidden state, projected back to ``dim``."""

    def __init__(self, *, dim: int, layers: int = 1, dropout: float = 0.1) -> None:
        super().__init__()
        self.gru = nn.GRU(dim, dim, num_layers=layers, batch_first=True, dropout=dropout if layers > 1 else 0.0)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(dim, dim)

    def forward(self, users: torch.Tensor, history: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if history.shape[1] == 0:
            return history.new_zeros(history.shape[0], history.shape[2])
        history, mask = pack_right(history, mask)
        x = self.dropout(history * mask.unsqueeze(-1).to(history.dtype))
        states, _ = self.gru(x)
        present = mask.any(1, keepdim=True).to(states.dtype)
        return self.out(states[:, -1]) * present


class TransformerUserEncoder(UserEncoder):
    """A causal Transformer encoder with learned positions counted back from the most recent item."""

    def __init__(self, *, dim: int, max_length: int, layers: int = 2, heads: int = 2, dropout: float = 0.1) -> None:
        super().__init__()
        self.positions = nn.Embedding(max_length, dim)
        nn.init.normal_(self.positions.weight, std=0.02)
        self.norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(
            dim, heads, dim_feedforward=2 * dim, dropout=dropout, activation="gelu", batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.heads = heads

    def forward(self, users: torch.Tensor, history: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b = history.shape[0]
        if history.shape[1] == 0:
            return history.new_zeros(b, history.shape[2])
        history, mask = pack_right(history, mask)
        length = min(history.shape[1], self.positions.num_embeddings)
        history, mask = history[:, -length:], mask[:, -length:]
        pos = torch.arange(length - 1, -1, -1, device=history.device)  # 0 = most recent
        x = self.dropout(self.norm(history + self.positions(pos)))
        # causal, and no attention to padding; a padding query may see itself so no row is empty
        causal = torch.ones(length, length, dtype=torch.bool, device=x.device).tril()
        allowed = causal & (mask.unsqueeze(1) | torch.eye(length, dtype=torch.bool, device=x.device))  # [B, L, L]
        attn_mask = (~allowed).repeat_interleave(self.heads, dim=0)  # True = may not attend
        h = self.encoder(x, mask=attn_mask)
        present = mask.any(1, keepdim=True).to(h.dtype)
        return h[:, -1] * present


def gru_user_encoder(*, context: BuildContext, domain: str, layers: int = 1, dropout: float = 0.1) -> GruUserEncoder:
    """GRU over the user's history in ``domain`` (GRU4Rec-style)."""
    return GruUserEncoder(dim=context.dim, layers=layers, dropout=dropout)


def transformer_user_encoder(
    *, context: BuildContext, domain: str, layers: int = 2, heads: int = 2, dropout: float = 0.1, max_length: int = 200
) -> TransformerUserEncoder:
    """Causal Transformer with positions over the user's history in ``domain`` (SASRec-style)."""
    return TransformerUserEncoder(dim=context.dim, max_length=max_length, layers=layers, heads=heads, dropout=dropout)
