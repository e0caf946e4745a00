"""GRU4Rec (crossbench_cdr.gru4rec): the last GRU state against a hand-written GRU, the order of the
history, all-position training equal to RecBole's per-prefix samples, a learnt next-item rule, cold users."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from crossbench.data.model import CrossDomainData
from crossbench.data.protocols import FitSplit, GroundTruth
from crossbench.errors import CrossbenchError
from crossbench.plugin.interfaces import RunEnv
from crossbench_cdr.gru4rec import Gru4Rec, Gru4RecModule, left_align, next_item_loss


def module(n_items: int = 6, dim: int = 4, hidden: int = 5) -> Gru4RecModule:
    torch.manual_seed(0)
    return Gru4RecModule(n_items=n_items, dim=dim, hidden=hidden, layers=1, dropout=0.3,
                         popularity=torch.arange(n_items, dtype=torch.float32)).eval()


def hand_gru(m: Gru4RecModule, items: list[int]) -> torch.Tensor:
    """The GRU equations (Cho et al. 2014, PyTorch's gate order r, z, n; no biases) from h = 0, then the dense layer."""
    w_ir, w_iz, w_in = m.gru.weight_ih_l0.chunk(3)
    w_hr, w_hz, w_hn = m.gru.weight_hh_l0.chunk(3)
    h = torch.zeros(m.gru.hidden_size)
    for i in items:
        x = m.item.weight[i]
        r = torch.sigmoid(w_ir @ x + w_hr @ h)
        z = torch.sigmoid(w_iz @ x + w_hz @ h)
        n = torch.tanh(w_in @ x + r * (w_hn @ h))
        h = (1 - z) * n + z * h
    return m.dense(h)


def test_the_user_vector_is_the_projected_last_gru_state() -> None:
    m = module()
    with torch.no_grad():
        vectors, present = m.user_vectors(torch.tensor([[-1, -1, 2, 0, 5], [-1, -1, -1, -1, 3]]))
        torch.testing.assert_close(vectors[0], hand_gru(m, [2, 0, 5]))
        torch.testing.assert_close(vectors[1], hand_gru(m, [3]))
        scores = m.scores(torch.tensor([[2, 0, 5], [-1, -1, -1]]))
    assert present.tolist() == [True, True]
    torch.testing.assert_close(scores[0], hand_gru(m, [2, 0, 5]) @ m.item.weight.T)  # tied input/output embeddings
    assert scores[1].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]  # no history: target popularity


def test_the_score_depends_on_the_order_of_the_history_not_on_padding() -> None:
    m = module()
    with torch.no_grad():
        s = m.scores(torch.tensor([[1, 2, 3], [3, 2, 1], [-1, 1, 2], [1, 2, -1]]))
    assert (s[0] - s[1]).abs().max() > 1e-3, "the same items in another order must score differently"
    torch.testing.assert_close(s[2], s[3])  # padding anywhere is dropped, order kept
    assert left_align(torch.tensor([[-1, 4, -1, 2]]))[0].tolist() == [[4, 2, -1, -1]]


def test_all_position_loss_equals_the_mean_of_recbole_prefix_samples() -> None:
    m = module()
    windows = torch.tensor([[-1, 0, 4, 1, 3], [2, 5, 0, 1, 1]])
    with torch.no_grad():
        loss = next_item_loss(m, {"window": windows}, torch.Generator())
        samples = []  # RecBole's augmentation: every item after the first, predicted from the items before it
        for row in windows.tolist():
            items = [i for i in row if i >= 0]
            for j in range(1, len(items)):
                logits = hand_gru(m, items[:j]) @ m.item.weight.T
                samples.append(F.cross_entropy(logits.unsqueeze(0), torch.tensor([items[j]])))
    assert len(samples) == 3 + 4
    torch.testing.assert_close(loss, torch.stack(samples).mean())


def cycle_split(n_users: int = 40, n_items: int = 5) -> FitSplit:
    """Every user walks the cycle 0 -> 1 -> ... -> 4 -> 0 from their own start; user 'cold' has books only."""
    rows = [{"domain": "movies", "user": f"u{u}", "item": f"m{(u + t) % n_items}", "timestamp": t}
            for u in range(n_users) for t in range(8)]
    rows += [{"domain": "books", "user": "cold", "item": "b0", "timestamp": 0}]
    data = CrossDomainData.from_frames("cycle", pd.DataFrame(rows))
    empty = GroundTruth.from_pairs(np.zeros(0, np.int64), np.zeros(0, np.int64))
    return FitSplit(protocol="hand", target="movies", train=data.validate(), valid=empty)


def test_fit_learns_the_next_item_of_a_cycle_from_the_last_items() -> None:
    split = cycle_split()
    model = Gru4Rec(dim=8, hidden=16, dropout=0.0, lr=0.02, batch_size=64, epochs=60)
    report = model.fit(split, env=RunEnv(registry=None, seed=0, progress=False))
    assert report.epochs == 60 and report.valid_score is None  # no validation users: every epoch runs
    items = split.train.domain("movies").items["item_id"].tolist()
    index = {name: i for i, name in enumerate(items)}
    for start in range(5):
        history = torch.tensor([[index[f"m{(start + t) % 5}"] for t in range(3)]])
        best = int(model.score_histories(history).argmax())
        assert items[best] == f"m{(start + 3) % 5}", f"after m{start}, m{start + 1}, m{start + 2}"
    cold = int(np.flatnonzero(split.train.user_ids == "cold")[0])
    scores = model.score(torch.tensor([cold]))
    assert scores[0].tolist() == [64.0] * 5  # no target history: popularity (each item 8 times in each of 8 users' walks)


def test_settings_are_checked() -> None:
    with pytest.raises(CrossbenchError, match="model 'gru4rec'.*history_length"):
        Gru4Rec(history_length=1)
    with pytest.raises(CrossbenchError, match="dropout"):
        Gru4Rec(dropout=1.0)
