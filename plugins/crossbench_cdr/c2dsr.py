"""C2DSR: contrastive cross-domain sequential recommendation over one mixed sequence per user.

Cao, Cong, Sheng, Liu & Wang, "Contrastive Cross-Domain Sequential Recommendation", CIKM 2022.
A user's interactions of both domains, in time order, form one mixed sequence; the model
learns from it and from its two single-domain subsequences:

- three item tables (mixed, source-only, target-only), each refined by a graph layer over item
  transitions of the training sequences (mixed: an item and the next item of the sequence;
  single-domain: an item and the next item of its own domain; counts divided by the row sum),
  the layer's output averaged with its input (:mod:`crossbench_cdr.c2dsr_net`);
- three causal self-attention encoders (SASRec-style blocks, learned positions counted over the
  items of each sequence) read the mixed sequence and the two subsequences;
- the next item is predicted in each domain by a linear layer over that domain's items plus one
  padding logit ("the next item is not in this domain"): from the mixed state alone (shared)
  and from the mixed state plus the single-domain state (specific), four softmax
  cross-entropies over the last 10 positions, each averaged over every position of the batch;
- the contrastive infomax term: a bilinear discriminator per domain scores the mean
  single-domain state of a sequence against the mean mixed state at the other domain's
  positions (label 1) and against the same mean from a corrupted mixed sequence whose
  own-domain items were replaced by uniformly drawn items of that domain (label 0); log-loss;
- ``loss = lam * (the four cross-entropies) + (1 - lam) * (the two infomax log-losses)``; Adam.

Training sequences: each user's training interactions of the source and target domains, mixed
in time order (ties: source first, then by item), are cut into windows of ``maxlen`` items
(:func:`crossbench.train.sequences.sequence_windows`); a window's items but the last are the
input and each input position predicts the next item (and the next item of its own domain). As
in the authors' loader, the last input item of a domain is removed from that domain's
subsequence when the window's last item is of the other domain, and a window is skipped when
it has no next item to predict in either domain (fewer than two items of a domain). Corrupted
sequences are drawn once, before training.

Scoring: the user's most recent ``maxlen - 1`` training items of both domains, mixed; the
target output layer over the mixed state after the last item plus the target-only state after
the user's last target item. A cold user (no target history) is scored from the mixed sequence
of their source items alone: the shared encoder and the cross-domain graph carry what the paper
transfers (the target-only encoder then reads only padding, as in the authors' code for a test
sequence without target items).

Defaults (the authors' ``train_rec.py``): ``dim=256``, ``blocks=2``, ``heads=1``,
``gnn_layers=1``, ``dropout=0.2``, ``lam=0.7``, ``maxlen=15``, Adam ``lr=1e-3`` without weight
decay, ``batch_size=256``, ``epochs=100``; the authors keep the epoch of best validation MRR
over all epochs, so ``patience=100`` (no early stop) keeps the best validated epoch too.

Differences from the authors' code, and why:

- validation every epoch on crossbench's validation users (NDCG@10, full ranking, training items
  excluded; the authors: every 5th epoch, MRR against 999 sampled negatives) — crossbench's
  shared early stopping;
- Adam's betas are torch's (0.9, 0.999); the authors set (0.9, 0.98) — the staged trainer's
  optimiser has no betas setting;
- batches are reshuffled every epoch and the last one may be smaller (the authors shuffle once,
  keep the same batches for every epoch and fill the last batch with sequences from the first);
- a user with a long history gives several training windows (the authors' datasets hold one
  sequence of at most 15 items per user; on such data the two agree); the graphs are built from
  each user's whole training sequence;
- the authors' loader treats the first target item (id ``n_x``) as a source item when it ends a
  sequence (a ``>`` for ``>=``); here it is a target item;
- the graph layer's unused weight matrix (declared in the authors' code, never applied) is not
  created; the layer applies the normalised adjacency and a bias, as theirs does;
- the authors' shared ``GNN``/``leakey``/``lr_decay``/``max_grad_norm`` options have no effect in
  their training loop and are not offered;
- with more than two domains the non-target domains form one source domain
  (:mod:`crossbench_cdr.sources`); ``source="<domain>"`` keeps one.

The paper's and the authors' evaluation (leave-one-out against 999 sampled negatives, test
users unseen in training) is crossbench's ``loo-999`` protocol up to the test users; the
fidelity benchmark (``benchmarks/fidelity_c2dsr.py``) runs the authors' own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from crossbench.data.protocols import FitSplit
from crossbench.errors import CrossbenchError, unknown_name_message
from crossbench.plugin.interfaces import RunEnv
from crossbench.train.sequences import sequence_windows
from crossbench.train.stages import EarlyStopping, Stage, StageData, StagedRecommender
from crossbench_cdr.c2dsr_net import C2dsrNet, c2dsr_loss, transition_graphs

#: users scored per forward pass
SCORE_BATCH = 1024


def mixed_interactions(split: FitSplit, source: str | None) -> tuple[pd.DataFrame, int, int]:
    """Training interactions of the source side and the target in one id space (``user``, ``item``, ``timestamp``),
    sorted by user, time, domain (source first) and item; and the numbers of source and target items."""
    others = [d for d in split.train.domain_names if d != split.target]
    if source is not None and source not in others:
        raise CrossbenchError("model 'c2dsr': source " + unknown_name_message("domain", source, others))
    chosen = [source] if source is not None else others
    if not chosen:
        raise CrossbenchError(f"model 'c2dsr' needs a source domain besides the target {split.target!r}; "
                              f"the data has only {split.train.domain_names}")
    frames, offset = [], 0
    for rank, d in enumerate([*chosen, split.target]):
        inter = split.train.domain(d).interactions
        frames.append(pd.DataFrame({"user": inter["user"].to_numpy(np.int64), "item": inter["item"].to_numpy(np.int64) + offset,
                                    "timestamp": inter["timestamp"].to_numpy(np.int64), "rank": rank}))
        if d != split.target:
            offset += split.train.domain(d).n_items
    mixed = pd.concat(frames).sort_values(["user", "timestamp", "rank", "item"], kind="stable").reset_index(drop=True)
    return mixed[["user", "item", "timestamp"]], offset, split.train.domain(split.target).n_items


def _next_in_domain(values: torch.Tensor, ok: torch.Tensor, fill: int) -> torch.Tensor:
    """For each position ``j``: the value at the first ``k >= j`` with ``ok[k]`` (``fill`` when there is none)."""
    length = values.shape[1]
    idx = torch.where(ok, torch.arange(length).expand_as(values), torch.full_like(values, length))
    first = idx.flip(1).cummin(1).values.flip(1)
    padded = torch.cat([values, torch.full_like(values[:, :1], fill)], 1)
    return padded.gather(1, first)


def training_sequences(windows: torch.Tensor, n_x: int, n_y: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """The authors' training tensors of ``windows`` ``[W, maxlen]`` (item ids, ``-1`` left padding), one row per window
    kept (module docstring): inputs, positions, ground truths (padding class ``n_x`` / ``n_y``), corrupted inputs."""
    pad = n_x + n_y
    seq = torch.cat([torch.full_like(windows[:, :1], -1), windows[:, :-1]], 1)  # the input: all but the last item
    ground = windows
    valid = seq >= 0
    is_x, is_y = valid & (seq < n_x), valid & (seq >= n_x)
    nxt_x = _next_in_domain(ground, (ground >= 0) & (ground < n_x), -1)  # next source item at or after the ground
    nxt_y = _next_in_domain(ground, ground >= n_x, -1)
    out = {"seq": torch.where(valid, seq, pad), "position": valid.long().cumsum(1) * valid}
    for key, own, nxt, offset, size in (("x", is_x, nxt_x, 0, n_x), ("y", is_y, nxt_y, n_x, n_y)):
        kept = own & (nxt >= 0)  # the last own-domain input item leaves the subsequence when nothing of its domain follows
        out[f"{key}_seq"] = torch.where(kept, seq, pad)
        out[f"{key}_position"] = own.long().cumsum(1) * kept
        out[f"{key}_ground"] = torch.where(kept, nxt - offset, size)
        in_domain = valid & (ground >= offset) & (ground < offset + size)
        out[f"share_{key}_ground"] = torch.where(in_domain, ground - offset, size)
    rand_x = torch.randint(0, n_x, seq.shape, generator=gen)
    rand_y = n_x + torch.randint(0, n_y, seq.shape, generator=gen)
    out["corrupt_x"] = torch.where(is_y, rand_y, out["seq"])  # target items replaced at random
    out["corrupt_y"] = torch.where(is_x, rand_x, out["seq"])  # source items replaced at random
    both = (out["x_ground"] != n_x).any(1) & (out["y_ground"] != n_y).any(1)
    return {k: v[both] for k, v in out.items()}


def scoring_sequences(history: torch.Tensor, n_x: int, n_y: int) -> dict[str, torch.Tensor]:
    """``history`` ``[B, maxlen]`` (item ids, ``-1`` left padding, at most ``maxlen - 1`` items): the encoders' inputs."""
    pad = n_x + n_y
    valid = history >= 0
    out = {"seq": torch.where(valid, history, pad), "position": valid.long().cumsum(1) * valid}
    for key, own in (("x", valid & (history < n_x)), ("y", history >= n_x)):
        out[f"{key}_seq"] = torch.where(own, history, pad)
        out[f"{key}_position"] = own.long().cumsum(1) * own
    return out


class C2DSR(StagedRecommender):
    """C2DSR (Cao et al., CIKM 2022) as the authors' code trains it; see the module docstring."""

    def __init__(
        self, *, dim: int = 256, blocks: int = 2, heads: int = 1, gnn_layers: int = 1, dropout: float = 0.2, lam: float = 0.7,
        maxlen: int = 15, lr: float = 1e-3, batch_size: int = 256, epochs: int = 100, patience: int = 100,
        source: str | None = None,
    ) -> None:
        ints = {"dim": dim, "blocks": blocks, "heads": heads, "gnn_layers": gnn_layers, "batch_size": batch_size,
                "epochs": epochs, "patience": patience}
        bad = {k: v for k, v in ints.items() if v < 1}
        given = {"dim": dim, "heads": heads, "dropout": dropout, "lam": lam, "lr": lr}
        if maxlen < 3:
            bad["maxlen"] = maxlen
        if bad or dim % heads or not (0.0 <= dropout < 1.0 and 0.0 <= lam <= 1.0 and lr > 0):
            raise CrossbenchError(
                "model 'c2dsr': dim, blocks, heads, gnn_layers, batch_size, epochs, patience must be >= 1, maxlen >= 3, "
                f"heads must divide dim, dropout in [0, 1), lam in [0, 1], lr > 0; got {bad or given}"
            )
        self.dim, self.blocks, self.heads, self.gnn_layers, self.dropout, self.lam = dim, blocks, heads, gnn_layers, dropout, lam
        self.maxlen, self.lr, self.batch_size, self.epochs, self.patience, self.source = maxlen, lr, batch_size, epochs, patience, source
        self.history: torch.Tensor | None = None
        self.n_x = self.n_y = 0

    def settings(self) -> Mapping[str, Any]:
        return {k: getattr(self, k) for k in ("dim", "blocks", "heads", "gnn_layers", "dropout", "lam", "maxlen", "lr",
                                              "batch_size", "epochs", "patience", "source")}

    def describe(self) -> dict[str, Any]:
        return {"model": "c2dsr", "training": dict(self.settings())}

    def reads_source_domains(self) -> bool:
        return True

    def cold_users(self) -> str:
        return "from their source-domain sequence (shared mixed-sequence encoder and cross-domain item graph)"

    def build(self, split: FitSplit, env: RunEnv) -> C2dsrNet:
        mixed, self.n_x, self.n_y = mixed_interactions(split, self.source)
        users, items = mixed["user"].to_numpy(), mixed["item"].to_numpy()
        starts = np.r_[0, np.flatnonzero(np.diff(users)) + 1, len(users)]
        graphs = transition_graphs([items[a:b] for a, b in zip(starts[:-1], starts[1:])], self.n_x, self.n_x + self.n_y)
        owners, recent = sequence_windows(mixed.groupby("user").tail(self.maxlen - 1), self.maxlen - 1)
        self.history = torch.full((split.train.n_users, self.maxlen), -1, dtype=torch.long)
        self.history[owners, 1:] = recent  # one window per user: the most recent maxlen - 1 items
        self._windows = sequence_windows(mixed, self.maxlen)[1]
        return C2dsrNet(n_x=self.n_x, n_y=self.n_y, adj=graphs, dim=self.dim, maxlen=self.maxlen, blocks=self.blocks,
                        heads=self.heads, gnn_layers=self.gnn_layers, dropout=self.dropout)

    def stages(self, split: FitSplit, model: nn.Module, env: RunEnv) -> Sequence[Stage]:
        gen = torch.Generator().manual_seed(env.seed)
        data = training_sequences(self._windows, self.n_x, self.n_y, gen)
        if not len(data["seq"]):
            raise CrossbenchError(
                f"model 'c2dsr': no training sequence of target {split.target!r} holds two items of each domain; "
                "C2DSR learns from users active in both domains")
        lam = self.lam
        return [Stage("joint", ("",), lambda net, batch, g: c2dsr_loss(net, batch, lam), StageData(data), self.epochs,
                      batch_size=self.batch_size, lr=self.lr, stop=EarlyStopping(patience=self.patience))]

    def score_users(self, model: nn.Module, users: torch.Tensor) -> torch.Tensor:
        assert isinstance(model, C2dsrNet) and self.history is not None
        return self.score_histories(self.history.to(users.device)[users], model=model)

    def score_histories(self, history: torch.Tensor, *, domain: str = "target", model: nn.Module | None = None) -> torch.Tensor:
        """Scores ``[B, n_items]`` of the ``domain`` ("target" or "source") items for mixed histories ``[B, maxlen]``
        (source ids ``0 .. n_x-1``, target ids ``n_x ..``; ``-1`` left padding; at most ``maxlen - 1`` items), after ``fit``."""
        net = model if model is not None else self.model
        if not isinstance(net, C2dsrNet):
            raise CrossbenchError("model 'c2dsr': score_histories() called before fit()")
        net.eval()
        out = []
        with torch.no_grad():
            for s in range(0, len(history), SCORE_BATCH):
                inputs = scoring_sequences(history[s : s + SCORE_BATCH], self.n_x, self.n_y)
                key = "y" if domain == "target" else "x"
                fn = net.target_scores if domain == "target" else net.source_scores
                out.append(fn(inputs["seq"], inputs["position"], inputs[f"{key}_seq"], inputs[f"{key}_position"]).float())
        return torch.cat(out) if out else torch.zeros(0, self.n_y if domain == "target" else self.n_x)


__all__ = ["C2DSR", "mixed_interactions", "scoring_sequences", "training_sequences"]
