"""DTCDR (crossbench_cdr.dtcdr): the combined user vector against hand computations, a cold user's
target score read through their source embedding, the alpha-weighted joint log-loss, negatives
that avoid training positives, fitting on the kit's data."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hand_graphs import env, tiny_split

from crossbench.errors import CrossbenchError
from crossbench.testing.data import kit_data, kit_split
from crossbench_cdr.dtcdr import DTCDR, DTCDRModule, _JointLoss

# tiny_split: target films (u0-f0, u0-f1, u1-f0), source books (u0-b0, u2-b0);
# u0 shared, u1 films only, u2 books only (cold in the target)
SRC = torch.tensor([[1.0, -2.0], [5.0, 5.0], [0.5, 3.0]])  # source user vectors u0, u1, u2
TGT = torch.tensor([[-1.0, 4.0], [2.0, -1.0], [9.0, 9.0]])  # target user vectors u0, u1, u2


def module(combine: str = "max", **kw) -> tuple[DTCDR, DTCDRModule]:
    dtcdr = DTCDR(dim=2, hidden="1", dropout=0.0, combine=combine, **kw)
    m = dtcdr.build(tiny_split(), env()).eval()
    with torch.no_grad():
        m.source_users.weight.copy_(SRC)
        m.target_users.weight.copy_(TGT)
        m.target_items.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
        m.source_items.weight.copy_(torch.tensor([[-1.0, 1.0]]))
        for tower in m.towers.values():
            tower[1].weight.copy_(torch.tensor([[1.0] * tower[1].in_features]))  # hidden unit: relu(sum of inputs)
            tower[1].bias.zero_()
            tower[3].weight.fill_(2.0)
            tower[3].bias.fill_(-1.0)
    return dtcdr, m


def test_the_domains_each_user_has():
    _, m = module()
    assert m.has.tolist() == [[True, True], [False, True], [True, False]]


@pytest.mark.parametrize(("combine", "expected"), [
    # u0 shared: max(1, -1) = 1, max(-2, 4) = 4; u1 films only: its target vector; u2 books only: its source vector
    ("max", [[1.0, 4.0], [2.0, -1.0], [0.5, 3.0]]),
    ("mean", [[0.0, 1.0], [2.0, -1.0], [0.5, 3.0]]),
    ("concat", [[1.0, -2.0, -1.0, 4.0], [0.0, 0.0, 2.0, -1.0], [0.5, 3.0, 0.0, 0.0]]),
])
def test_combined_user_vector_by_hand(combine, expected):
    _, m = module(combine)
    torch.testing.assert_close(m.combined(torch.tensor([0, 1, 2])), torch.tensor(expected))


def test_scores_by_hand_and_a_cold_user_read_through_their_source_embedding():
    dtcdr, m = module("max")
    # u0 combined (1, 4): f0 = (1, 0) -> relu(1 + 4 + 1 + 0) = 6 -> 2 * 6 - 1 = 11; f1 = (0, 2) -> relu(7) -> 13
    # u2 combined (0.5, 3) (books only): f0 -> relu(4.5) -> 8; f1 -> relu(5.5) -> 10
    with torch.no_grad():
        scores = dtcdr.score_users(m, torch.tensor([0, 2]))
    torch.testing.assert_close(scores, torch.tensor([[11.0, 13.0], [8.0, 10.0]]))
    with torch.no_grad():
        m.target_users.weight[2] = torch.tensor([-50.0, 70.0])  # u2's unused target row: no effect
        torch.testing.assert_close(dtcdr.score_users(m, torch.tensor([2])), torch.tensor([[8.0, 10.0]]))
        m.source_users.weight[2] = torch.tensor([2.0, 3.0])  # only u2's source embedding changes
        # combined (2, 3): f0 -> relu(6) -> 11; f1 -> relu(7) -> 13
        torch.testing.assert_close(dtcdr.score_users(m, torch.tensor([2])), torch.tensor([[11.0, 13.0]]))
        # the shared user u0 reads both domains: raising their source vector above the target's changes the max
        m.source_users.weight[0] = torch.tensor([1.0, 6.0])  # combined (1, 6): f0 -> relu(8) -> 15
        assert dtcdr.score_users(m, torch.tensor([0]))[0, 0].item() == pytest.approx(15.0)


def test_joint_loss_weighs_the_domains_by_alpha():
    dtcdr, m = module("max", alpha=0.25)
    source, target = dtcdr.sides
    loss = _JointLoss(dtcdr.sides, alpha=0.25, negatives=1, device=torch.device("cpu"))
    batch = {"row": torch.tensor([0, 2])}
    value = loss(m, batch, torch.Generator().manual_seed(0))
    # source rows 0 % 2, 2 % 2: (u0, b0) twice; u0 took the only book, so its negative is b0 (uniform over all);
    # target rows 0 and 2: (u0, f0) and (u1, f0); u0 took both films (uniform over all), u1's negative is f1
    logit = lambda u, i, d: m.logits(torch.tensor([u]), torch.tensor([i]), d)  # noqa: E731
    b0 = logit(0, 0, "source")
    bce_s = (F.softplus(-b0) * 2 + F.softplus(b0) * 2) / 4
    replay = _JointLoss(dtcdr.sides, alpha=0.25, negatives=1, device=torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)
    replay.negatives_for("source", torch.tensor([0, 0]), gen)
    neg_t = replay.negatives_for("target", torch.tensor([0, 1]), gen)
    assert neg_t[1].item() == 1  # u1 took f0 only: its negative is f1
    bce_t = (F.softplus(-logit(0, 0, "target")) + F.softplus(-logit(1, 0, "target"))
             + F.softplus(logit(0, int(neg_t[0]), "target")) + F.softplus(logit(1, 1, "target"))) / 4
    assert value.item() == pytest.approx((0.25 * bce_s + 0.75 * bce_t).item(), rel=1e-6)


def test_negatives_avoid_the_users_training_items():
    dtcdr, _ = module()
    loss = _JointLoss(dtcdr.sides, alpha=0.5, negatives=4, device=torch.device("cpu"))
    neg = loss.negatives_for("target", torch.tensor([1] * 50), torch.Generator().manual_seed(3))
    assert neg.shape == (50, 4) and (neg == 1).all()  # u1 took f0: only f1 is a negative
    everything = loss.negatives_for("target", torch.tensor([0] * 200), torch.Generator().manual_seed(3))
    assert set(everything.flatten().tolist()) == {0, 1}  # u0 took both films: uniform over all


def test_negatives_are_uniform_over_the_untaken_items():
    """Kit data: every user's draws fall outside their training items and cover the rest evenly."""
    split = kit_split(kit_data()).fit_view()
    dtcdr = DTCDR(dim=2)
    dtcdr.build(split, env())
    target = dtcdr.sides[1]
    loss = _JointLoss(dtcdr.sides, alpha=0.5, negatives=2000, device=torch.device("cpu"))
    user = int(target.counts().argmax())
    taken = set(target.csr_items[target.indptr[user]:target.indptr[user + 1]].tolist())
    draws = loss.negatives_for("target", torch.tensor([user]), torch.Generator().manual_seed(1))[0]
    counts = torch.bincount(draws, minlength=target.n_items).float()
    free = [i for i in range(target.n_items) if i not in taken]
    assert all(counts[i] == 0 for i in taken) and all(counts[i] > 0 for i in free)
    expected = 2000 / len(free)
    assert ((counts[free] - expected).abs() / expected).max() < 0.35, (counts, expected)


def test_fit_on_the_kit_data_is_deterministic():
    split = kit_split(kit_data()).fit_view()
    runs = []
    for _ in range(2):
        model = DTCDR(dim=8, hidden="8,4", epochs=3, patience=2, batch_size=64, lr=0.01)
        report = model.fit(split, env=env())
        runs.append(model.score(torch.arange(split.train.n_users)))
    assert torch.equal(runs[0], runs[1])
    assert runs[0].shape == (split.train.n_users, split.train.domain(split.target).n_items)
    assert report.valid_metric == "ndcg@10" and 1 <= report.epochs <= 3
    assert model.reads_source_domains() and model.cold_users().startswith("from source-domain history")
    n = max(len(split.train.domain(d).interactions) for d in split.train.domain_names)
    assert report.train_samples == report.epochs * n


def test_settings_are_checked():
    with pytest.raises(CrossbenchError, match="'dtcdr': combine unknown operator 'sum'"):
        DTCDR(combine="sum")
    with pytest.raises(CrossbenchError, match=r"'dtcdr': alpha must be in \[0, 1\]"):
        DTCDR(alpha=1.5)
    with pytest.raises(CrossbenchError, match="'dtcdr': hidden must be layer sizes"):
        DTCDR(hidden="32,x")
    assert DTCDR().settings()["combine"] == "max" and DTCDR().settings()["hidden"] == "32,16"
