"""GRU4Rec: a recurrent network over the user's item sequence, trained to predict the next item.

Hidasi, Karatzoglou, Baltrunas, Tikk. "Session-based Recommendations with Recurrent Neural
Networks." ICLR 2016. Trained here as RecBole 1.2.1's ``GRU4Rec`` trains it (the version CDR
papers run as their sequential baseline), on the target domain's ID history only:

1. each item has an embedding (``dim``, Xavier-normal initialisation); a user's history (their
   most recent ``history_length`` target-domain training items, oldest first) is embedded,
   passed through dropout (``dropout``), then through a GRU (``hidden`` units, ``layers``
   layers, no bias terms, Xavier-uniform input and recurrent weights of the first layer) that
   starts from the zero state;
2. the GRU's state after the last item, projected back to ``dim`` by a linear layer, is the
   user's vector; an item's score is its dot product with the item's embedding (the same
   table as the input: input and output embeddings are tied);
3. the loss is the cross-entropy of the next item over the whole target catalogue (RecBole's
   ``loss_type="CE"``), averaged over the targets of a batch; Adam.

Every interaction after a user's first is a target once per epoch, predicted from the items
before it (RecBole's data augmentation: one sample per prefix). crossbench runs those prefixes
in one pass per sequence: the history is cut into windows of ``history_length`` items
(:func:`crossbench.train.sequences.sequence_windows`) and the GRU's state after position
``j - 1`` predicts the item at ``j`` (a GRU is causal, so that state is exactly the state of the
prefix sample). ``batch_size`` counts targets, as RecBole's batch counts prefix samples: a step
takes as many windows as hold ``batch_size`` targets on average.

Scoring: the state after the user's most recent training items; a user with no target history
(every test user of a cold-start split) is scored by target training popularity, as ``sasrec``.
The model reads no other domain.

Defaults are RecBole 1.2.1's (``GRU4Rec.yaml`` and ``overall.yaml``): ``dim=64``, ``hidden=128``,
``layers=1``, ``dropout=0.3``, ``lr=1e-3``, ``batch_size=2048``, ``history_length=50``
(``MAX_ITEM_LIST_LENGTH``), at most ``epochs=300`` with ``patience=10``.

Differences from the paper and from RecBole, and why:

- the paper's session-parallel mini-batches (the hidden state carried from one event to the
  next across a batch of parallel sessions, reset when a session ends) are not taken: with the
  whole history of a user available, running the GRU over each sequence (RecBole's and every
  CDR paper's version) gives the same state without the bookkeeping;
- the paper's ranking losses (TOP1, BPR over the other items of the mini-batch) and its
  one-hot input without embeddings are not taken: RecBole's version, what CDR papers compare
  against, uses an embedding and full cross-entropy (the authors' own later GRU4Rec also
  reports cross-entropy as the strongest loss);
- a target's prefix starts at its window's first item: a target of a user's older window sees
  fewer than ``history_length`` earlier items (RecBole slides the 50 items up to each target),
  and the first item of each window after the oldest is not a target (RecBole's is); only users
  with more than ``history_length`` training items differ;
- an item's embedding dropout is drawn once per window position, so every later target of the
  window sees the same dropped embedding (RecBole draws it anew in each prefix sample);
- RecBole's catalogue has a padding item 0 whose (frozen, random) embedding stays in the
  softmax; here the catalogue is the target's items only;
- early stopping on the validation users' NDCG@``valid_k`` with training items excluded
  (RecBole: MRR@10 on each user's next item, history items not excluded).

Python API (what the fidelity benchmark calls)::

    from crossbench_cdr.gru4rec import Gru4Rec
    model = Gru4Rec(epochs=300, patience=10)
    report = model.fit(fit_split, env=RunEnv(registry=None, seed=0, progress=False))
    scores = model.score(users)                       # [len(users), n_target_items]
    scores = model.score_histories(histories)         # any [B, L] item histories, -1 padding on the left
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from crossbench.data.protocols import FitSplit
from crossbench.errors import CrossbenchError
from crossbench.plugin.interfaces import RunEnv
from crossbench.train.sequences import sequence_windows
from crossbench.train.stages import Batch, EarlyStopping, Stage, StageData, StagedRecommender
from crossbench.train.stages_data import histories


def left_align(history: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``history`` ``[B, L]`` (items, ``-1`` padding anywhere) with its kept items moved to the left, order kept,
    and the number of kept items per row ``[B]``."""
    kept = history >= 0
    order = torch.argsort((~kept).to(torch.int8), dim=1, stable=True)
    return history.gather(1, order), kept.sum(1)


class Gru4RecModule(nn.Module):
    """Item embeddings, embedding dropout, a bias-free GRU and the dense projection (RecBole's layout)."""

    popularity: torch.Tensor

    def __init__(self, *, n_items: int, dim: int, hidden: int, layers: int, dropout: float, popularity: torch.Tensor) -> None:
        super().__init__()
        self.item = nn.Embedding(n_items, dim)
        self.dropout = nn.Dropout(dropout)
        self.gru = nn.GRU(dim, hidden, num_layers=layers, bias=False, batch_first=True)
        self.dense = nn.Linear(hidden, dim)
        nn.init.xavier_normal_(self.item.weight)
        nn.init.xavier_uniform_(self.gru.weight_ih_l0)
        nn.init.xavier_uniform_(self.gru.weight_hh_l0)
        self.register_buffer("popularity", popularity.float())

    def states(self, aligned: torch.Tensor) -> torch.Tensor:
        """Projected GRU outputs ``[B, L, dim]`` after each position of left-aligned histories (padding ``-1`` on the right)."""
        x = self.dropout(self.item(aligned.clamp(min=0)))
        out, _ = self.gru(x)
        return self.dense(out)

    def user_vectors(self, history: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The projected state after the last item of each history ``[B, dim]``, and whether the row has an item."""
        aligned, n = left_align(history)
        width = max(int(n.max()) if n.numel() else 0, 1)
        states = self.states(aligned[:, :width])
        last = states.gather(1, (n - 1).clamp(min=0).view(-1, 1, 1).expand(-1, 1, states.shape[2])).squeeze(1)
        return last, n > 0

    def scores(self, history: torch.Tensor) -> torch.Tensor:
        """Scores ``[B, n_items]`` of each history; target popularity where a history is empty."""
        vectors, present = self.user_vectors(history)
        s = (vectors @ self.item.weight.T).float()
        return torch.where(present[:, None], s, self.popularity[None, :])


def next_item_loss(model: Gru4RecModule, batch: Batch, gen: torch.Generator) -> torch.Tensor:
    """Cross-entropy over the catalogue of every item of the windows that has an earlier item in its window."""
    aligned, n = left_align(batch["window"])
    states = model.states(aligned)  # state after each position
    positions = torch.arange(aligned.shape[1], device=aligned.device).unsqueeze(0)
    is_target = (positions >= 1) & (positions < n.unsqueeze(1))  # item j predicted from the state after j - 1
    rows, cols = is_target.nonzero(as_tuple=True)
    if rows.numel() == 0:
        return states.sum() * 0.0
    logits = (states[rows, cols - 1] @ model.item.weight.T).float()
    return F.cross_entropy(logits, aligned[rows, cols])


class Gru4Rec(StagedRecommender):
    """GRU4Rec (Hidasi et al., ICLR 2016) as RecBole 1.2.1 trains it; see the module docstring."""

    def __init__(
        self, *, dim: int = 64, hidden: int = 128, layers: int = 1, dropout: float = 0.3, lr: float = 1e-3,
        batch_size: int = 2048, history_length: int = 50, epochs: int = 300, patience: int = 10, valid_k: int = 10,
    ) -> None:
        counts = {"dim": dim, "hidden": hidden, "layers": layers, "batch_size": batch_size, "epochs": epochs,
                  "patience": patience, "valid_k": valid_k}
        bad = {k: v for k, v in counts.items() if v < 1}
        if history_length < 2:
            bad["history_length"] = history_length
        if bad or not lr > 0 or not 0.0 <= dropout < 1.0:
            raise CrossbenchError(
                f"model 'gru4rec': dim, hidden, layers, batch_size, epochs, patience, valid_k must be >= 1, history_length >= 2, "
                f"lr > 0 and dropout in [0, 1); got {bad or {'lr': lr, 'dropout': dropout}}"
            )
        self.dim, self.hidden, self.layers, self.dropout, self.lr = dim, hidden, layers, dropout, lr
        self.batch_size, self.history_length, self.epochs, self.patience, self.valid_k = batch_size, history_length, epochs, patience, valid_k
        self.history: torch.Tensor | None = None

    def settings(self) -> Mapping[str, Any]:
        return {k: getattr(self, k) for k in (
            "dim", "hidden", "layers", "dropout", "lr", "batch_size", "history_length", "epochs", "patience", "valid_k")}

    def describe(self) -> dict[str, Any]:
        return {"model": "gru4rec", "training": dict(self.settings())}

    def reads_source_domains(self) -> bool:
        return False

    def cold_users(self) -> str:
        return "by target popularity (no target-domain history to read)"

    def build(self, split: FitSplit, env: RunEnv) -> Gru4RecModule:
        target = split.train.domain(split.target)
        popularity = torch.as_tensor(np.bincount(target.interactions["item"].to_numpy(), minlength=target.n_items))
        self.history = histories(split, self.history_length)[split.target]
        return Gru4RecModule(n_items=target.n_items, dim=self.dim, hidden=self.hidden, layers=self.layers,
                             dropout=self.dropout, popularity=popularity)

    def stages(self, split: FitSplit, model: nn.Module, env: RunEnv) -> Sequence[Stage]:
        _, windows = sequence_windows(split.train.domain(split.target).interactions, self.history_length)
        targets = (windows >= 0).sum(1).clamp(min=1) - 1  # items with an earlier item in their window
        if int(targets.sum()) == 0:
            raise CrossbenchError(f"model 'gru4rec': no user has two training interactions in target {split.target!r}; nothing to predict")
        per_step = max(1, round(self.batch_size * len(windows) / int(targets.sum())))
        return [Stage("next-item", ("",), next_item_loss, StageData({"window": windows}), self.epochs, batch_size=per_step,
                      lr=self.lr, stop=EarlyStopping(patience=self.patience, valid_k=self.valid_k))]

    def score_users(self, model: nn.Module, users: torch.Tensor) -> torch.Tensor:
        assert isinstance(model, Gru4RecModule) and self.history is not None
        return model.scores(self.history.to(users.device)[users])

    def score_histories(self, history: torch.Tensor) -> torch.Tensor:
        """Scores ``[B, n_items]`` of arbitrary histories (item indices, oldest first, ``-1`` padding), after ``fit``."""
        if not isinstance(self.model, Gru4RecModule):
            raise CrossbenchError("model 'gru4rec': score_histories() called before fit()")
        self.model.eval()
        with torch.no_grad():
            return self.model.scores(history.to(self.model.item.weight.device))


__all__ = ["Gru4Rec", "Gru4RecModule", "left_align", "next_item_loss"]
