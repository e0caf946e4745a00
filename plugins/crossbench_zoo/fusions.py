"""Cross-domain fusions: concat + MLP, gating, attention over domains or over items, EMCDR, PTUPCDR.

Every fusion here keeps one set of weights per target domain (the trainer fuses towards
each domain it trains on) and treats an absent domain (``present`` false) as missing, never
as a zero vector that carries information. EMCDR and PTUPCDR are trained jointly with the
encoders: their mapping is used exactly where the target history is absent, which during
training happens to overlapping training users whose target history the trainer hides
(``target_history_dropout``), so the mapping learns on overlapping users only, from the
ranking loss on their held-back target items.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from crossbench.plugin.modules import Fusion


def _others(vectors: Mapping[str, torch.Tensor], target: str) -> list[str]:
    return sorted(d for d in vectors if d != target)


def _source_mean(vectors: Mapping[str, torch.Tensor], present: Mapping[str, torch.Tensor], target: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean of the present non-target vectors ``[B, d]`` and whether any is present ``[B]``."""
    ref = vectors[target]
    total, count = torch.zeros_like(ref), ref.new_zeros(ref.shape[0], 1)
    for d in _others(vectors, target):
        w = present[d].to(ref.dtype).unsqueeze(-1)
        total, count = total + vectors[d] * w, count + w
    return total / count.clamp(min=1.0), count.squeeze(-1) > 0


def _mlp(in_dim: int, hidden: int, out_dim: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, out_dim))


class ConcatFusion(Fusion):
    """MLP over [target vector, other vectors in name order, presence flags] plus the target vector."""

    def __init__(self, *, domains: list[str], dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        n = len(domains)
        self.mlps = nn.ModuleDict({d: _mlp(n * dim + n, hidden, dim, dropout) for d in domains})

    def forward(self, vectors: Mapping[str, torch.Tensor], present: Mapping[str, torch.Tensor], target: str) -> torch.Tensor:
        order = [target, *_others(vectors, target)]
        parts = [vectors[d] * present[d].to(vectors[d].dtype).unsqueeze(-1) for d in order]
        flags = torch.stack([present[d].to(vectors[target].dtype) for d in order], dim=1)
        return parts[0] + self.mlps[target](torch.cat([*parts, flags], dim=1))


class GatingFusion(Fusion):
    """A learned element-wise gate between the target vector and the mapped source vectors."""

    def __init__(self, *, domains: list[str], dim: int) -> None:
        super().__init__()
        self.gates = nn.ModuleDict({d: nn.Linear(2 * dim + 2, dim) for d in domains})
        self.maps = nn.ModuleDict({d: nn.Linear(dim, dim) for d in domains})

    def forward(self, vectors: Mapping[str, torch.Tensor], present: Mapping[str, torch.Tensor], target: str) -> torch.Tensor:
        t_present = present[target].to(vectors[target].dtype).unsqueeze(-1)
        t = vectors[target] * t_present
        s, s_any = _source_mean(vectors, present, target)
        s_flag = s_any.to(s.dtype).unsqueeze(-1)
        s = self.maps[target](s) * s_flag
        g = torch.sigmoid(self.gates[target](torch.cat([t, s, t_present, s_flag], dim=1)))
        # with the target absent the gate takes the source; with no source it takes the target
        g = g * t_present
        g = torch.where(s_flag > 0, g, torch.ones_like(g))
        return g * t + (1 - g) * s


class AttentionFusion(Fusion):
    """Cross-domain multi-head attention: the target domain's query attends over every domain's vector.

    Keys and values are each domain's user vector through its own projection plus a domain
    embedding; a learned null slot lets an empty user attend somewhere. The query is the
    target vector (zeros when absent) plus the target's domain embedding, and the result is
    added to the target vector and passed through a feed-forward block.
    """

    def __init__(self, *, domains: list[str], dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.domains = list(domains)
        self.domain_embedding = nn.ParameterDict({d: nn.Parameter(torch.randn(dim) * 0.02) for d in domains})
        self.project = nn.ModuleDict({d: nn.Linear(dim, dim) for d in domains})
        self.null = nn.Parameter(torch.randn(dim) * 0.02)
        self.attention = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.ffn = _mlp(dim, 2 * dim, dim, dropout)

    def forward(self, vectors: Mapping[str, torch.Tensor], present: Mapping[str, torch.Tensor], target: str) -> torch.Tensor:
        b = vectors[target].shape[0]
        t = vectors[target] * present[target].to(vectors[target].dtype).unsqueeze(-1)
        names = [d for d in self.domains if d in vectors]
        slots = [self.project[d](vectors[d]) + self.domain_embedding[d] for d in names]
        keys = torch.stack([self.null.expand(b, -1).to(t.dtype), *slots], dim=1)  # [B, 1 + D, dim]
        blocked = torch.stack([torch.zeros_like(present[target]), *[~present[d] for d in names]], dim=1)
        query = self.norm1(t + self.domain_embedding[target]).unsqueeze(1)
        attended, _ = self.attention(query, keys, keys, key_padding_mask=blocked, need_weights=False)
        h = t + attended.squeeze(1)
        return h + self.ffn(self.norm2(h))


class ItemAttentionFusion(Fusion):
    """Cross-domain attention at the level of items: the target query attends over the user's
    individual items of every domain, not over one pooled vector per domain.

    Keys and values are the item vectors plus a learned embedding of their domain, and a
    learned null slot that every query may read (so a user with no history anywhere gets a
    finite, learned vector). The query is the target-domain state (zeros when the user has no
    target history) plus the target's domain embedding; each layer adds the attended value
    and a feed-forward block to it. In all-position training the query before target
    position ``j`` reads target items ``k < j`` only; source items are visible everywhere.
    """

    item_level = True
    positions = True
    pooled_sources = False

    def __init__(self, *, domains: list[str], dim: int, heads: int, layers: int, dropout: float, source_mean: bool = True) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"item-attention: dim {dim} is not divisible by heads {heads}")
        self.domains, self.heads, self.dropout = list(domains), heads, dropout
        #: the mean of the user's source items, projected, is added to the query (the
        #: attention then weighs items by what the user's sources as a whole say)
        self.source_mean = nn.Linear(dim, dim) if source_mean else None
        self.domain_embedding = nn.ParameterDict({d: nn.Parameter(torch.randn(dim) * 0.02) for d in domains})
        self.null = nn.Parameter(torch.randn(dim) * 0.02)
        self.key_norm = nn.LayerNorm(dim)
        self.layers = nn.ModuleList(_QueryLayer(dim=dim, dropout=dropout) for _ in range(layers))

    def forward(  # type: ignore[override]
        self,
        vectors: Mapping[str, torch.Tensor],
        present: Mapping[str, torch.Tensor],
        target: str,
        *,
        items: Mapping[str, torch.Tensor],
        item_masks: Mapping[str, torch.Tensor],
    ) -> torch.Tensor:
        per_position = vectors[target].dim() == 3
        q = vectors[target] if per_position else vectors[target].unsqueeze(1)  # [B, P, dim]
        p_t = present[target] if per_position else present[target].unsqueeze(1)  # [B, P]
        b, n_q, dim = q.shape
        q = q * p_t.unsqueeze(-1).to(q.dtype)
        keys, allowed = [self.null.to(q.dtype).expand(b, 1, dim)], [q.new_ones(b, n_q, 1, dtype=torch.bool)]
        for d in self.domains:
            if d not in items:
                continue
            keys.append(items[d] + self.domain_embedding[d].to(q.dtype))
            seen = item_masks[d].unsqueeze(1).expand(b, n_q, -1)  # [B, P, L_d]
            if d == target and per_position:
                length = items[d].shape[1]
                earlier = torch.ones(n_q, length, dtype=torch.bool, device=q.device).tril(-1)  # k < j
                seen = seen & earlier
            allowed.append(seen)
        kv_in = self.key_norm(torch.cat(keys, dim=1))  # [B, K, dim]
        mask = torch.cat(allowed, dim=2).unsqueeze(1)  # [B, 1, P, K]
        split = lambda t: t.unflatten(-1, (self.heads, dim // self.heads)).transpose(1, 2)  # noqa: E731
        h = q + self.domain_embedding[target].to(q.dtype)
        if self.source_mean is not None:
            total, count = q.new_zeros(b, dim), q.new_zeros(b, 1)
            for d in self.domains:
                if d in items and d != target:
                    w = item_masks[d].unsqueeze(-1).to(q.dtype)
                    total, count = total + (items[d] * w).sum(1), count + w.sum(1)
            h = h + self.source_mean(total / count.clamp(min=1.0)).unsqueeze(1)
        for layer in self.layers:
            assert isinstance(layer, _QueryLayer)
            k, v = layer.kv(kv_in).chunk(2, dim=-1)
            att = nn.functional.scaled_dot_product_attention(
                split(layer.q(layer.norm_q(h))), split(k), split(v), attn_mask=mask,
                dropout_p=self.dropout if self.training else 0.0,
            )
            h = h + layer.out(att.transpose(1, 2).flatten(2))
            h = h + layer.ffn(layer.norm_f(h))
        return h if per_position else h.squeeze(1)


class _QueryLayer(nn.Module):
    """One attention read of :class:`ItemAttentionFusion`: query projection, keys and values, output, feed-forward."""

    def __init__(self, *, dim: int, dropout: float) -> None:
        super().__init__()
        self.norm_q, self.q, self.kv = nn.LayerNorm(dim), nn.Linear(dim, dim), nn.Linear(dim, 2 * dim)
        self.out, self.norm_f, self.ffn = nn.Linear(dim, dim), nn.LayerNorm(dim), _mlp(dim, 2 * dim, dim, dropout)


class EmcdrFusion(Fusion):
    """EMCDR-style: the target vector where the user has one, else an MLP mapping of the source vectors."""

    def __init__(self, *, domains: list[str], dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.maps = nn.ModuleDict({d: _mlp(dim, hidden, dim, dropout) for d in domains})

    def forward(self, vectors: Mapping[str, torch.Tensor], present: Mapping[str, torch.Tensor], target: str) -> torch.Tensor:
        s, s_any = _source_mean(vectors, present, target)
        mapped = self.maps[target](s) * s_any.to(s.dtype).unsqueeze(-1)
        return torch.where(present[target].unsqueeze(-1), vectors[target], mapped)


class PtupcdrFusion(Fusion):
    """PTUPCDR-style personalised bridge: a meta network turns the user's source vector
    (their encoded source history) into that user's own ``dim x dim`` mapping matrix, applied
    to the same source vector, for users without target history."""

    def __init__(self, *, domains: list[str], dim: int, hidden: int) -> None:
        super().__init__()
        self.dim = dim
        self.meta = nn.ModuleDict({d: nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, dim * dim)) for d in domains})
        for net in self.meta.values():
            last = net[-1]
            assert isinstance(last, nn.Linear)
            nn.init.normal_(last.weight, std=0.01 / dim)
            with torch.no_grad():  # start near the identity bridge
                last.bias.copy_(torch.eye(dim).flatten())

    def forward(self, vectors: Mapping[str, torch.Tensor], present: Mapping[str, torch.Tensor], target: str) -> torch.Tensor:
        s, s_any = _source_mean(vectors, present, target)
        out = vectors[target] * present[target].to(s.dtype).unsqueeze(-1)
        rows = (~present[target] & s_any).nonzero().squeeze(1)  # only users who need the bridge
        if len(rows) == 0:
            return out + 0.0 * s  # keep the graph connected to the sources
        src = s[rows]
        bridge = self.meta[target](src).view(-1, self.dim, self.dim)  # [R, d, d]
        mapped = torch.bmm(src.unsqueeze(1), bridge).squeeze(1)
        return out.index_put((rows,), mapped)
