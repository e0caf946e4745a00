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


class CausalBlock(nn.Module):
    """A pre-norm Transformer block (multi-head self-attention, GELU feed-forward).

    ``last_only`` computes the output of the last position alone: its query attends over
    every position's keys and values, and only that position goes through the feed-forward
    part. A user encoder that reads the last position needs nothing else from its top block.
    """

    def __init__(self, *, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.ffn = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor, *, last_only: bool) -> torch.Tensor:
        b, length, dim = x.shape
        h = self.norm1(x)
        w_q, w_kv = self.qkv.weight.split([dim, 2 * dim])
        b_q, b_kv = self.qkv.bias.split([dim, 2 * dim])
        if last_only:
            x, h, allowed = x[:, -1:], h, allowed[:, -1:]
        q = nn.functional.linear(h[:, -x.shape[1] :], w_q, b_q)
        k, v = nn.functional.linear(h, w_kv, b_kv).chunk(2, dim=-1)
        split = lambda t: t.unflatten(-1, (self.heads, dim // self.heads)).transpose(1, 2)  # noqa: E731
        att = nn.functional.scaled_dot_product_attention(
            split(q), split(k), split(v), attn_mask=allowed.unsqueeze(1), dropout_p=self.dropout if self.training else 0.0
        )
        x = x + self.drop(self.proj(att.transpose(1, 2).flatten(2)))
        return x + self.drop(self.ffn(self.norm2(x)))


class TransformerUserEncoder(UserEncoder):
    """A causal Transformer encoder with learned positions counted back from the most recent item."""

    def __init__(self, *, dim: int, max_length: int, layers: int = 2, heads: int = 2, dropout: float = 0.1) -> None:
        super().__init__()
        self.positions = nn.Embedding(max_length, dim)
        nn.init.normal_(self.positions.weight, std=0.02)
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(CausalBlock(dim=dim, heads=heads, dropout=dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)

    def forward(self, users: torch.Tensor, history: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b = history.shape[0]
        if history.shape[1] == 0:
            return history.new_zeros(b, history.shape[2])
        history, mask = pack_right(history, mask)
        length = min(history.shape[1], self.positions.num_embeddings)
        history, mask = history[:, -length:], mask[:, -length:]
        pos = torch.arange(length - 1, -1, -1, device=history.device)  # 0 = most recent
        x = self.dropout(history + self.positions(pos))
        # causal, and no attention to padding; a padding query may see itself so no row is empty
        causal = torch.ones(length, length, dtype=torch.bool, device=x.device).tril()
        allowed = causal & (mask.unsqueeze(1) | torch.eye(length, dtype=torch.bool, device=x.device))  # [B, L, L]
        for i, block in enumerate(self.blocks):
            x = block(x, allowed, last_only=i == len(self.blocks) - 1)
        present = mask.any(1, keepdim=True).to(x.dtype)
        return self.norm(x[:, -1]) * present


def gru_user_encoder(*, context: BuildContext, domain: str, layers: int = 1, dropout: float = 0.1) -> GruUserEncoder:
    """GRU over the user's history in ``domain`` (GRU4Rec-style)."""
    return GruUserEncoder(dim=context.dim, layers=layers, dropout=dropout)


def transformer_user_encoder(
    *, context: BuildContext, domain: str, layers: int = 2, heads: int = 2, dropout: float = 0.1, max_length: int = 200
) -> TransformerUserEncoder:
    """Causal Transformer with positions over the user's history in ``domain`` (SASRec-style)."""
    return TransformerUserEncoder(dim=context.dim, max_length=max_length, layers=layers, heads=heads, dropout=dropout)
