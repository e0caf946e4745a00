"""The network of C2DSR (Cao et al., CIKM 2022): item-transition graphs, self-attention encoders, the losses.

See :mod:`crossbench_cdr.c2dsr` for the model, its training and every difference from the
authors' code. Items live in one id space: source items ``0 .. n_x-1``, target items
``n_x .. n_x+n_y-1`` and one padding id ``n_x+n_y`` (the last row of every item table).
Sequences are ``[B, maxlen]`` tensors of such ids, left-padded, with positions counted from
1 over the kept items (0 on padding).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from crossbench_cdr.bilinear import bilinear

#: the authors' training loss reads the last 10 positions of each sequence only
PREDICTED_POSITIONS = 10


def transition_graphs(sequences: Sequence[np.ndarray], n_x: int, n_items: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(mixed, per-domain) item-transition matrices ``[n_items+1, n_items+1]`` (the last row: padding, empty).

    ``mixed[a, b]`` counts how often ``b`` directly follows ``a`` in a sequence; ``per_domain[a, b]``
    how often ``b`` is the next item of ``a``'s own domain after ``a``. Each row is divided by its
    sum (a row without transitions stays empty)."""
    mixed: list[np.ndarray] = []
    single: list[np.ndarray] = []
    for seq in sequences:
        seq = np.asarray(seq, dtype=np.int64)
        if len(seq) > 1:
            mixed.append(np.stack([seq[:-1], seq[1:]], 1))
        for part in (seq[seq < n_x], seq[seq >= n_x]):
            if len(part) > 1:
                single.append(np.stack([part[:-1], part[1:]], 1))
    return _row_normalised(mixed, n_items + 1), _row_normalised(single, n_items + 1)


def _row_normalised(edges: list[np.ndarray], n: int) -> torch.Tensor:
    pairs = np.concatenate(edges) if edges else np.zeros((0, 2), dtype=np.int64)
    index = torch.as_tensor(pairs.T.copy(), dtype=torch.long).reshape(2, -1)
    adj = torch.sparse_coo_tensor(index, torch.ones(index.shape[1]), (n, n), check_invariants=True).coalesce()
    rows, values = adj.indices()[0], adj.values()
    degree = torch.zeros(n).index_add_(0, rows, values)
    return torch.sparse_coo_tensor(adj.indices(), values / degree[rows], (n, n), check_invariants=True).coalesce()


class GraphEncoder(nn.Module):
    """The authors' GCN layer: ``layers`` propagations ``A · dropout(E) + b``, averaged with the input."""

    def __init__(self, *, dim: int, layers: int, dropout: float) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(dim)
        self.biases = nn.ParameterList(nn.Parameter(torch.empty(dim).uniform_(-bound, bound)) for _ in range(layers))
        self.dropout = dropout

    def forward(self, embeddings: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        total, h = embeddings, embeddings
        for bias in self.biases:
            h = torch.sparse.mm(adj, F.dropout(h, self.dropout, training=self.training)) + bias
            total = total + h
        return total / (len(self.biases) + 1)


class _Block(nn.Module):
    """One self-attention block as the authors' (SASRec-style): ``Q = LN(x)``, ``x = Q + MHA(Q, x, x)``,
    ``x = LN(x)``, ``x = x + FFN(x)`` (two position-wise layers with ReLU and dropout)."""

    def __init__(self, *, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.attn_norm, self.ffn_norm = nn.LayerNorm(dim, eps=1e-8), nn.LayerNorm(dim, eps=1e-8)
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.ffn = nn.Sequential(nn.Linear(dim, dim), nn.Dropout(dropout), nn.ReLU(), nn.Linear(dim, dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, future: torch.Tensor) -> torch.Tensor:
        q = self.attn_norm(x)
        x = q + self.attn(q, x, x, attn_mask=future, need_weights=False)[0]
        x = self.ffn_norm(x)
        return x + self.ffn(x)


class SequenceEncoder(nn.Module):
    """The authors' causal self-attention encoder: learned positions, padding zeroed after each block, a final LN."""

    def __init__(self, *, dim: int, maxlen: int, blocks: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.positions = nn.Embedding(maxlen, dim, padding_idx=0)
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(_Block(dim=dim, heads=heads, dropout=dropout) for _ in range(blocks))
        self.norm = nn.LayerNorm(dim, eps=1e-8)

    def forward(self, x: torch.Tensor, position: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
        """``x`` ``[B, L, dim]`` item vectors, ``position`` ``[B, L]``, ``padding`` ``[B, L]`` bool: the state after each position."""
        keep = (~padding).unsqueeze(-1).to(x.dtype)
        x = self.dropout(x + self.positions(position)) * keep
        length = x.shape[1]
        future = ~torch.ones(length, length, dtype=torch.bool, device=x.device).tril()
        for block in self.blocks:
            x = block(x, future) * keep
        return self.norm(x)


class C2dsrNet(nn.Module):
    """Three item tables (mixed, source-only, target-only), their graph encoders and sequence encoders,
    the two infomax discriminators and the output layers of each domain (plus the padding logit)."""

    mixed_adj: torch.Tensor
    single_adj: torch.Tensor

    def __init__(self, *, n_x: int, n_y: int, adj: tuple[torch.Tensor, torch.Tensor], dim: int, maxlen: int, blocks: int,
                 heads: int, gnn_layers: int, dropout: float) -> None:
        super().__init__()
        self.n_x, self.n_y, self.pad = n_x, n_y, n_x + n_y
        self.register_buffer("mixed_adj", adj[0])
        self.register_buffer("single_adj", adj[1])
        self.items = nn.ModuleDict({k: nn.Embedding(n_x + n_y + 1, dim, padding_idx=self.pad) for k in ("mixed", "x", "y")})
        self.graphs = nn.ModuleDict({k: GraphEncoder(dim=dim, layers=gnn_layers, dropout=dropout) for k in ("mixed", "x", "y")})
        self.encoders = nn.ModuleDict({k: SequenceEncoder(dim=dim, maxlen=maxlen, blocks=blocks, heads=heads, dropout=dropout)
                                       for k in ("mixed", "x", "y")})
        self.discriminators = nn.ModuleDict({k: nn.Bilinear(dim, dim, 1) for k in ("x", "y")})
        for layer in self.discriminators.values():
            assert isinstance(layer, nn.Bilinear)
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)
        self.out_x, self.out_y, self.out_pad = nn.Linear(dim, n_x), nn.Linear(dim, n_y), nn.Linear(dim, 1)

    def tables(self) -> dict[str, torch.Tensor]:
        """Each item table after its graph encoder plus the table itself (what a sequence reads), times sqrt(dim)."""
        out = {}
        for key, adj in (("mixed", self.mixed_adj), ("x", self.single_adj), ("y", self.single_adj)):
            table = self.items[key].weight
            assert isinstance(table, torch.Tensor)
            out[key] = (self.graphs[key](table, adj) + table) * math.sqrt(table.shape[1])
        return out

    def encode(self, tables: Mapping[str, torch.Tensor], key: str, seq: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
        """The ``key`` encoder's states ``[B, L, dim]`` over ``seq`` (item ids, padding ``self.pad``)."""
        return self.encoders[key](tables[key][seq], position, seq == self.pad)

    def target_scores(self, seq: torch.Tensor, position: torch.Tensor, y_seq: torch.Tensor, y_position: torch.Tensor) -> torch.Tensor:
        """Target-item scores ``[B, n_y]``: the mixed state after the last position plus the target-only state after
        the user's last target item (after the last position when there is none)."""
        tables = self.tables()
        shared = self.encode(tables, "mixed", seq, position)[:, -1]
        states = self.encode(tables, "y", y_seq, y_position)
        return self.out_y(shared + states[torch.arange(len(seq), device=seq.device), _last_kept(y_position)])

    def source_scores(self, seq: torch.Tensor, position: torch.Tensor, x_seq: torch.Tensor, x_position: torch.Tensor) -> torch.Tensor:
        """Source-item scores ``[B, n_x]``, as :meth:`target_scores` for the source domain."""
        tables = self.tables()
        shared = self.encode(tables, "mixed", seq, position)[:, -1]
        states = self.encode(tables, "x", x_seq, x_position)
        return self.out_x(shared + states[torch.arange(len(seq), device=seq.device), _last_kept(x_position)])


def _last_kept(position: torch.Tensor) -> torch.Tensor:
    """The index of each row's last non-zero position, or ``L - 1`` (the authors' ``-1``) when there is none."""
    length = position.shape[1]
    idx = torch.arange(length, device=position.device).expand_as(position)
    last = torch.where(position > 0, idx, torch.full_like(idx, -1)).max(1).values
    return torch.where(last >= 0, last, torch.full_like(last, length - 1))


def _masked_mean(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.to(states.dtype)
    return (states * (weights / weights.sum(1, keepdim=True)).unsqueeze(-1)).sum(1)


def c2dsr_loss(net: C2dsrNet, batch: Mapping[str, torch.Tensor], lam: float) -> torch.Tensor:
    """``lam * (four next-item cross-entropies) + (1 - lam) * (two infomax log-losses)`` of a batch of training
    sequences (the columns of :func:`crossbench_cdr.c2dsr.training_sequences`)."""
    tables = net.tables()
    pos = batch["position"]
    h = net.encode(tables, "mixed", batch["seq"], pos)
    hx = net.encode(tables, "x", batch["x_seq"], batch["x_position"])
    hy = net.encode(tables, "y", batch["y_seq"], batch["y_position"])
    fake_x = net.encode(tables, "mixed", batch["corrupt_x"], pos)  # target items replaced at random
    fake_y = net.encode(tables, "mixed", batch["corrupt_y"], pos)  # source items replaced at random
    xm, ym = batch["x_ground"] != net.n_x, batch["y_ground"] != net.n_y
    r_x, r_y = _masked_mean(hx, xm), _masked_mean(hy, ym)
    mixed_x, mixed_y = _masked_mean(h, xm), _masked_mean(h, ym)
    d_x, d_y = net.discriminators["x"], net.discriminators["y"]
    assert isinstance(d_x, nn.Bilinear) and isinstance(d_y, nn.Bilinear)
    infomax = torch.zeros((), device=h.device)
    for logit, label in ((bilinear(d_x, mixed_y, r_x), 1.0), (bilinear(d_x, _masked_mean(fake_y, ym), r_x), 0.0),
                         (bilinear(d_y, mixed_x, r_y), 1.0), (bilinear(d_y, _masked_mean(fake_x, xm), r_y), 0.0)):
        infomax = infomax + F.binary_cross_entropy_with_logits(logit.float(), torch.full_like(logit.float(), label))
    k = PREDICTED_POSITIONS
    h, hx, hy = h[:, -k:], hx[:, -k:], hy[:, -k:]
    heads = (
        (net.out_x(h), net.out_pad(h), batch["share_x_ground"], net.n_x),
        (net.out_y(h), net.out_pad(h), batch["share_y_ground"], net.n_y),
        (net.out_x(h + hx), net.out_pad(hx), batch["x_ground"], net.n_x),
        (net.out_y(h + hy), net.out_pad(hy), batch["y_ground"], net.n_y),
    )
    ranking = torch.zeros((), device=h.device)
    for logits, pad_logit, ground, pad_class in heads:
        ground = ground[:, -k:]
        ce = F.cross_entropy(torch.cat([logits, pad_logit], -1).flatten(0, 1).float(), ground.reshape(-1), reduction="none")
        ranking = ranking + (ce * (ground.reshape(-1) != pad_class)).mean()  # mean over every position, as the authors
    return lam * ranking + (1 - lam) * infomax


__all__ = ["PREDICTED_POSITIONS", "C2dsrNet", "GraphEncoder", "SequenceEncoder", "c2dsr_loss", "transition_graphs"]
