"""Sequence user encoders: a GRU and a causal Transformer with positions, one per domain.

Histories arrive oldest first and left-padded, and the trainer may mask positions inside
them. ``forward`` packs the kept items to the right end (order preserved), drops
all-padding columns and reads the state after the most recent item; ``forward_all`` gives
the state after every position in one pass (all-position training), equal to ``forward``
on each prefix. A user with no history gets zeros.
"""

from __future__ import annotations

import torch
from torch import nn

from crossbench.errors import CrossbenchError, unknown_name_message
from crossbench.plugin.modules import UserEncoder

#: block layouts of the Transformer user encoder
NORMS = ("pre", "post")


def pack_right(history: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Move kept positions to the right end (order kept), trim padding columns shared by all rows."""
    order = torch.argsort(mask.to(torch.int8), dim=1, stable=True)  # padding first, kept items after
    history = history.gather(1, order.unsqueeze(-1).expand_as(history))
    mask = mask.gather(1, order)
    width = max(int(mask.sum(1).max()) if mask.numel() else 0, 1)
    return history[:, -width:], mask[:, -width:]


class GruUserEncoder(UserEncoder):
    """A GRU over the kept items of the history (from the initial state); the last state, projected."""

    def __init__(self, *, dim: int, layers: int = 1, dropout: float = 0.1) -> None:
        super().__init__()
        self.gru = nn.GRU(dim, dim, num_layers=layers, batch_first=True, dropout=dropout if layers > 1 else 0.0)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.out = nn.Linear(dim, dim)

    def _states(self, history: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """States over the kept items moved to the left end (the GRU starts on the first item)."""
        order = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)  # kept items first, order kept
        x = history.gather(1, order.unsqueeze(-1).expand_as(history))
        states, _ = self.gru(self.dropout(x))
        return states, mask.sum(1)

    def forward(self, users: torch.Tensor, history: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if history.shape[1] == 0:
            return history.new_zeros(history.shape[0], history.shape[2])
        history, mask = pack_right(history, mask)
        states, n = self._states(history, mask)
        last = states.gather(1, (n - 1).clamp(min=0).view(-1, 1, 1).expand(-1, 1, states.shape[2])).squeeze(1)
        return self.out(last) * (n > 0).unsqueeze(-1).to(last.dtype)

    def forward_all(self, users: torch.Tensor, history: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if history.shape[1] == 0:
            return history.new_zeros(history.shape)
        states, n = self._states(history, mask)
        length = history.shape[1]
        # left padding: original position j holds the (j - pad)-th kept item's state
        shift = torch.arange(length, device=history.device).unsqueeze(0) - (length - n).unsqueeze(1)
        out = states.gather(1, shift.clamp(min=0).unsqueeze(-1).expand_as(states))
        return self.out(out) * (shift >= 0).unsqueeze(-1).to(out.dtype)


class CausalBlock(nn.Module):
    """A Transformer block (multi-head self-attention, GELU feed-forward), pre-norm or post-norm.

    Pre-norm (``post_norm=False``) normalises each sub-layer's input and adds its output to the
    residual stream; post-norm (SASRec's and BERT's layout) adds the output, then normalises
    the sum. ``last_only`` computes the output of the last position alone: its query attends
    over every position's keys and values, and only that position goes through the
    feed-forward part. A user encoder that reads the last position needs nothing else from
    its top block.
    """

    def __init__(self, *, dim: int, heads: int, dropout: float, post_norm: bool = False, eps: float = 1e-5) -> None:
        super().__init__()
        self.heads, self.dropout, self.post_norm = heads, dropout, post_norm
        self.norm1, self.norm2 = nn.LayerNorm(dim, eps=eps), nn.LayerNorm(dim, eps=eps)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.ffn = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, allowed: torch.Tensor, *, last_only: bool) -> torch.Tensor:
        b, length, dim = x.shape
        h = x if self.post_norm else self.norm1(x)
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
        if self.post_norm:
            x = self.norm1(x)
            return self.norm2(x + self.drop(self.ffn(x)))
        return x + self.drop(self.ffn(self.norm2(x)))


class TransformerUserEncoder(UserEncoder):
    """A causal Transformer encoder with learned positions counted from the first kept item.

    Position ``p`` of an item is the number of kept items before it (capped at
    ``max_length - 1``), so the state after an item does not depend on the padding around
    it: the state after the ``j``-th item is the same whether the sequence ends there
    (scoring) or goes on (all-position training).

    ``norm="pre"``: pre-norm blocks and a final LayerNorm. ``norm="post"`` (SASRec as RecBole
    and BERT lay it out): the input (item vector plus position) is normalised, each block
    normalises after its residual sums, there is no final norm, and every LayerNorm uses
    ``eps=1e-12``. ``init_std > 0`` draws every linear weight and the positions from a normal
    with that deviation and zeroes the biases; 0 keeps PyTorch's initialisation of the linear
    layers (positions: std 0.02).
    """

    def __init__(
        self, *, dim: int, max_length: int, layers: int = 2, heads: int = 2, dropout: float = 0.1, norm: str = "pre",
        init_std: float = 0.0,
    ) -> None:
        super().__init__()
        if norm not in NORMS:
            raise CrossbenchError(unknown_name_message("transformer norm", norm, NORMS))
        if not init_std >= 0:
            raise CrossbenchError(f"transformer init_std must be >= 0 (0: PyTorch's initialisation), got {init_std}")
        post, eps = norm == "post", 1e-12 if norm == "post" else 1e-5
        self.post_norm = post
        self.positions = nn.Embedding(max_length, dim)
        nn.init.normal_(self.positions.weight, std=0.02)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.blocks = nn.ModuleList(CausalBlock(dim=dim, heads=heads, dropout=dropout, post_norm=post, eps=eps) for _ in range(layers))
        self.norm = nn.LayerNorm(dim, eps=eps)  # post-norm: the input's norm; pre-norm: the output's
        if init_std > 0:
            for module in self.modules():
                if isinstance(module, (nn.Linear, nn.Embedding)):
                    nn.init.normal_(module.weight, std=init_std)
                if isinstance(module, nn.Linear) and module.bias is not None:
                    nn.init.zeros_(module.bias)

    def _encode(self, history: torch.Tensor, mask: torch.Tensor, *, last_only: bool) -> torch.Tensor:
        length = history.shape[1]
        pos = (mask.long().cumsum(1) - 1).clamp(0, self.positions.num_embeddings - 1)
        x = history + self.positions(pos)
        x = self.dropout(self.norm(x) if self.post_norm else x)
        # causal, and no attention to padding; a padding query may see itself so no row is empty
        causal = torch.ones(length, length, dtype=torch.bool, device=x.device).tril()
        allowed = causal & (mask.unsqueeze(1) | torch.eye(length, dtype=torch.bool, device=x.device))  # [B, L, L]
        for i, block in enumerate(self.blocks):
            x = block(x, allowed, last_only=last_only and i == len(self.blocks) - 1)
        return x if self.post_norm else self.norm(x)

    def forward(self, users: torch.Tensor, history: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b = history.shape[0]
        if history.shape[1] == 0:
            return history.new_zeros(b, history.shape[2])
        history, mask = pack_right(history, mask)
        present = mask.any(1, keepdim=True).to(history.dtype)
        return self._encode(history, mask, last_only=True)[:, -1] * present

    def forward_all(self, users: torch.Tensor, history: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if history.shape[1] == 0:
            return history.new_zeros(history.shape)
        seen = (mask.long().cumsum(1) > 0).unsqueeze(-1).to(history.dtype)
        return self._encode(history, mask, last_only=False) * seen
