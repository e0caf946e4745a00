"""C2DSR (crossbench_cdr.c2dsr): item-transition graphs and training sequences by hand, the loss by hand
with zeroed output layers, what a cold user's score reads, corruption in the right domain, the
fidelity benchmark's ranking rule, fitting on the kit's data."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hand_graphs import env

from crossbench.data.model import CrossDomainData
from crossbench.data.protocols import FitSplit, GroundTruth
from crossbench.errors import CrossbenchError
from crossbench.testing.data import kit_data, kit_split
from crossbench_cdr.c2dsr import C2DSR, mixed_interactions, scoring_sequences, training_sequences
from crossbench_cdr.c2dsr_net import C2dsrNet, c2dsr_loss, transition_graphs

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from fidelity_c2dsr_data import c2dsr_task, draw_negatives, rank_metrics, ranks, write_c2dsr  # noqa: E402

# two source items (ids 0, 1), three target items (ids 2, 3, 4), padding id 5
N_X, N_Y, PAD = 2, 3, 5
#: one window, oldest first: source 0, target 3, source 1, target 4
WINDOW = torch.tensor([[-1, 0, 3, 1, 4]])


def test_transition_graphs_by_hand():
    mixed, single = transition_graphs([np.array([0, 3, 1]), np.array([3, 4])], N_X, N_X + N_Y)
    m, s = mixed.to_dense(), single.to_dense()
    assert m.shape == (6, 6)
    # mixed: 0 -> 3; 3 -> 1 and 3 -> 4 (row 3 halves); per domain: 0 -> 1 (sources of sequence 1), 3 -> 4
    expected_m = torch.zeros(6, 6)
    expected_m[0, 3], expected_m[3, 1], expected_m[3, 4] = 1.0, 0.5, 0.5
    expected_s = torch.zeros(6, 6)
    expected_s[0, 1], expected_s[3, 4] = 1.0, 1.0
    torch.testing.assert_close(m, expected_m)
    torch.testing.assert_close(s, expected_s)


def test_training_sequences_by_hand():
    t = training_sequences(WINDOW, N_X, N_Y, torch.Generator().manual_seed(0))
    # input: all but the last item; each input predicts the next item (shared) and its domain's next item (specific)
    assert t["seq"].tolist() == [[PAD, PAD, 0, 3, 1]] and t["position"].tolist() == [[0, 0, 1, 2, 3]]
    # source 1 is the last source input and no source item follows it: it leaves the source subsequence
    assert t["x_seq"].tolist() == [[PAD, PAD, 0, PAD, PAD]] and t["x_position"].tolist() == [[0, 0, 1, 0, 0]]
    assert t["x_ground"].tolist() == [[2, 2, 1, 2, 2]]  # source 0 -> next source item 1; 2 = padding class
    assert t["y_seq"].tolist() == [[PAD, PAD, PAD, 3, PAD]] and t["y_position"].tolist() == [[0, 0, 0, 1, 0]]
    assert t["y_ground"].tolist() == [[3, 3, 3, 2, 3]]  # target 3 -> target 4 (local 2); 3 = padding class
    assert t["share_x_ground"].tolist() == [[2, 2, 2, 1, 2]]  # the next item when it is a source item
    assert t["share_y_ground"].tolist() == [[3, 3, 1, 3, 2]]  # the next item when it is a target item (local ids)


def test_corruption_replaces_the_other_domain_with_items_of_that_domain():
    windows = WINDOW.repeat(200, 1)
    t = training_sequences(windows, N_X, N_Y, torch.Generator().manual_seed(3))
    cx, cy = t["corrupt_x"], t["corrupt_y"]
    # corrupt_x keeps the source items and draws every target position among the target items (and vice versa)
    assert (cx[:, [0, 1, 2, 4]] == torch.tensor([PAD, PAD, 0, 1])).all() and set(cx[:, 3].tolist()) == {2, 3, 4}
    assert (cy[:, [0, 1, 3]] == torch.tensor([PAD, PAD, 3])).all()
    assert set(cy[:, 2].tolist()) == {0, 1} and set(cy[:, 4].tolist()) == {0, 1}


def test_a_window_without_a_next_item_in_a_domain_is_skipped():
    windows = torch.tensor([[-1, 0, 3, 1, 4], [-1, -1, 0, 2, 3]])  # the second has one source item: nothing to predict there
    t = training_sequences(windows, N_X, N_Y, torch.Generator().manual_seed(0))
    assert t["seq"].tolist() == [[PAD, PAD, 0, 3, 1]]


def net(**kw) -> C2dsrNet:
    adj = transition_graphs([np.array([0, 3, 1, 4])], N_X, N_X + N_Y)
    return C2dsrNet(n_x=N_X, n_y=N_Y, adj=adj, dim=4, maxlen=5, blocks=1, heads=1, gnn_layers=1, dropout=0.0, **kw).eval()


def test_loss_by_hand_with_zeroed_output_layers_and_discriminators():
    torch.manual_seed(0)
    model = net()
    with torch.no_grad():
        for layer in (model.out_x, model.out_y, model.out_pad, *model.discriminators.values()):
            layer.weight.zero_()
            layer.bias.zero_()
    batch = training_sequences(WINDOW, N_X, N_Y, torch.Generator().manual_seed(0))
    # every logit 0: a cross-entropy is log(n + 1) (n items and the padding class) at each predicted position,
    # averaged over all 5 positions; shared source: 1 position, shared target: 2, specific: 1 each
    ranking = (1 * math.log(3) + 2 * math.log(4) + 1 * math.log(3) + 1 * math.log(4)) / 5
    infomax = 4 * math.log(2)  # four log-losses of logit 0
    for lam in (0.7, 0.0, 1.0):
        assert c2dsr_loss(model, batch, lam).item() == pytest.approx(lam * ranking + (1 - lam) * infomax, rel=1e-6)
    assert 0.7 * ranking + 0.3 * infomax == pytest.approx(1.721632, abs=1e-6)


def test_a_cold_users_target_scores_read_the_mixed_sequence_of_their_source_items():
    torch.manual_seed(0)
    model = net()
    cold = scoring_sequences(torch.tensor([[-1, -1, -1, 0, 1]]), N_X, N_Y)  # source items only
    warm = scoring_sequences(torch.tensor([[-1, -1, 0, 3, 1]]), N_X, N_Y)
    args = lambda s: (s["seq"], s["position"], s["y_seq"], s["y_position"])  # noqa: E731
    with torch.no_grad():
        before_cold, before_warm = model.target_scores(*args(cold)), model.target_scores(*args(warm))
        # the target-only encoder reads nothing but padding: its state is its final norm's bias
        shared = model.encode(model.tables(), "mixed", cold["seq"], cold["position"])[:, -1]
        torch.testing.assert_close(before_cold, model.out_y(shared + model.encoders["y"].norm.bias))
        model.items["y"].weight.add_(1.0)  # the target-only item table: no effect on the cold user
        torch.testing.assert_close(model.target_scores(*args(cold)), before_cold)
        assert not torch.allclose(model.target_scores(*args(warm)), before_warm)
        model.items["mixed"].weight[1].add_(1.0)  # their source item 1 in the mixed table moves their scores
        assert not torch.allclose(model.target_scores(*args(cold)), before_cold)


def test_mixed_interactions_order_by_time_then_source_first():
    rows = [("films", "u0", "f0", 5), ("books", "u0", "b1", 5), ("books", "u0", "b0", 1), ("films", "u1", "f1", 2)]
    data = CrossDomainData.from_frames("t", pd.DataFrame(rows, columns=["domain", "user", "item", "timestamp"]),
                                       domain_order=["books", "films"])
    split = FitSplit(protocol="hand", target="films", train=data, valid=GroundTruth.from_pairs(np.zeros(0, np.int64), np.zeros(0, np.int64)))
    mixed, n_x, n_y = mixed_interactions(split, None)
    index = lambda d, i: int(np.flatnonzero(data.domain(d).items["item_id"].to_numpy() == i)[0])  # noqa: E731
    b0, b1, f0 = index("books", "b0"), index("books", "b1"), index("films", "f0")
    assert (n_x, n_y) == (2, 2)
    u0 = mixed[mixed["user"] == int(np.flatnonzero(data.user_ids == "u0")[0])]["item"].tolist()
    assert u0 == [b0, b1, n_x + f0]  # b0 at time 1; at time 5 the source item before the target item
    with pytest.raises(CrossbenchError, match="'c2dsr': source unknown domain 'music'"):
        mixed_interactions(split, "music")


def test_the_authors_rank_rule_and_negatives():
    scores = np.array([[0.5, 0.9, 0.5 + 1e-6, 0.1]])
    # item 0 held out: item 1 beats it by more than 1e-5, item 2 by less (a tie for the authors)
    assert ranks(scores, np.array([0]), np.array([[1, 2, 3, 1]])).tolist() == [3]
    m = rank_metrics(np.array([1, 3, 20]))
    assert m["mrr"] == pytest.approx((1 + 1 / 3 + 1 / 20) / 3) and m["hr@1"] == pytest.approx(1 / 3)
    assert m["ndcg@10"] == pytest.approx((1 + 1 / math.log2(4)) / 3) and m["ndcg@5"] == m["ndcg@10"]
    neg = draw_negatives(np.array([0, 3, 4]), 5, rng=np.random.default_rng(0), count=999)
    assert neg.shape == (3, 999) and all(t not in row for t, row in zip((0, 3, 4), neg.tolist()))
    assert set(neg[0].tolist()) == {1, 2, 3, 4}  # uniform over the others, with replacement


def test_the_authors_files_hold_each_users_last_items_mixed_by_time(tmp_path: Path):
    # user 0: source s5 (t 1), target d7 (t 2), s6 (t 3), d8 (t 4), s5 (t 5); user 1: one source item only (dropped)
    source = pd.DataFrame({"user": [0, 0, 0, 1], "item": [5, 6, 5, 6], "timestamp": [1, 3, 5, 1]})
    target = pd.DataFrame({"user": [0, 0, 1], "item": [7, 8, 7], "timestamp": [2, 4, 2]})
    task = c2dsr_task(source, target, seed=0, window=4, fractions=(1.0, 0.0))
    # the last 4 items of user 0: d7 s6 d8 s5; source ids 0 (s5), 1 (s6); target ids 2 (d7), 3 (d8)
    assert (task.n_x, task.n_y) == (2, 2) and task.train == [[2, 1, 3, 0]] and task.valid == [] and task.test == []
    folder = write_c2dsr(task, tmp_path, name="a-b")
    assert (folder / "traindata_new.txt").read_text() == "0\t0\t2|0\t1|1\t3|2\t0|3\n"
    assert len((folder / "Alist.txt").read_text().splitlines()) == 2 and (folder / "testdata_new.txt").read_text() == ""


def test_fit_on_the_kit_data_is_deterministic_and_serves_cold_users():
    split = kit_split(kit_data())
    fit = split.fit_view()
    runs = []
    for _ in range(2):
        model = C2DSR(dim=8, epochs=2, patience=2, batch_size=16, lr=0.01)
        report = model.fit(fit, env=env())
        runs.append(model.score(torch.as_tensor(split.test.users)))
    assert torch.equal(runs[0], runs[1]) and torch.isfinite(runs[0]).all()
    assert runs[0].shape == (len(split.test.users), fit.train.domain(fit.target).n_items)
    assert report.valid_metric == "ndcg@10" and report.epochs == 2
    # cold test users differ from each other: each is read from their own source sequence
    assert len({tuple(r) for r in runs[0].round(decimals=4).tolist()}) > 1
    assert model.reads_source_domains() and model.cold_users().startswith("from their source-domain sequence")


def test_settings_are_checked():
    with pytest.raises(CrossbenchError, match="heads must divide dim"):
        C2DSR(dim=10, heads=3)
    with pytest.raises(CrossbenchError, match="maxlen >= 3"):
        C2DSR(maxlen=2)
    with pytest.raises(CrossbenchError, match=r"lam in \[0, 1\]"):
        C2DSR(lam=1.5)
    assert C2DSR().settings()["dim"] == 256 and C2DSR().settings()["lam"] == 0.7 and C2DSR().settings()["patience"] == 100
