"""CoNet (Hu et al., CIKM 2018): cross connections with one transfer matrix per layer shared by
both directions; zeroing it decouples the towers; the joint log-loss masks a domain a user lacks."""

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
from crossbench_cdr.conet import CoNet, CoNetModule, _JointLogLoss

ENV = RunEnv(registry=None, seed=0, progress=False)  # type: ignore[arg-type]


def _hand_split() -> FitSplit:
    """Users a (books 0, 1; movie 0) and b (book 1 only: cold in movies); two movies."""
    rows = [("books", "a", 0), ("books", "a", 1), ("books", "b", 1), ("movies", "a", 0), ("movies", "a", 1)]
    frame = pd.DataFrame([(d, u, f"{d[0]}{i}", t, 5.0) for t, (d, u, i) in enumerate(rows)],
                         columns=["domain", "user", "item", "timestamp", "rating"])
    data = CrossDomainData.from_frames("hand", frame, domain_order=["books", "movies"])
    return FitSplit(protocol="hand", target="movies", train=data, valid=GroundTruth.from_pairs(np.zeros(0, np.int64), np.zeros(0, np.int64)))


def _one_unit_model() -> tuple[CoNet, CoNetModule]:
    """dim 1, one hidden unit: towers 2 -> 1 -> logit, every weight set by hand."""
    conet = CoNet(dim=1, hidden="1")
    model = conet.build(_hand_split(), ENV)
    with torch.no_grad():
        model.users.weight.copy_(torch.tensor([[1.0], [2.0]]))
        model.source_items.weight.copy_(torch.tensor([[0.5], [-1.0]]))
        model.target_items.weight.copy_(torch.tensor([[3.0], [1.0]]))
        model.source_tower[0].weight.copy_(torch.tensor([[1.0, 2.0]]))
        model.source_tower[0].bias.fill_(0.0)
        model.target_tower[0].weight.copy_(torch.tensor([[1.0, -1.0]]))
        model.target_tower[0].bias.fill_(0.5)
        model.cross[0].weight.copy_(torch.tensor([[0.5, 1.0]]))
        for out in (model.source_out, model.target_out):
            out.weight.fill_(2.0)
            out.bias.fill_(-1.0)
    return conet, model


def test_towers_exchange_through_the_one_shared_transfer_matrix():
    conet, model = _one_unit_model()
    # user a (1), book 0 (0.5), movie 1 (1): a0 = (1, 0.5), b0 = (1, 1)
    # a1 = relu(1 + 1 + H.b0 = 0.5 + 1) = 3.5 ; b1 = relu(1 - 1 + 0.5 + H.a0 = 0.5 + 0.5) = 1.5
    logit_s, logit_t = model.towers(torch.tensor([0]), torch.tensor([0]), torch.tensor([1]))
    assert logit_s.item() == pytest.approx(2 * 3.5 - 1) and logit_t.item() == pytest.approx(2 * 1.5 - 1)


def test_zeroing_the_transfer_matrix_decouples_the_towers():
    conet, model = _one_unit_model()
    users, movie = torch.tensor([0, 0]), torch.tensor([1, 1])
    _, coupled = model.towers(users, torch.tensor([0, 1]), movie)  # the same movie, two different books
    assert coupled[0].item() != pytest.approx(coupled[1].item())  # the target logit reads the source tower
    with torch.no_grad():
        model.cross[0].weight.zero_()
    _, alone = model.towers(users, torch.tensor([0, 1]), movie)
    # b1 = relu(1 - 1 + 0.5) = 0.5 whatever the book: logit 2 * 0.5 - 1 = 0
    torch.testing.assert_close(alone, torch.tensor([0.0, 0.0]))
    assert CoNet(dim=1, hidden="1", cross=False).build(_hand_split(), ENV).cross is None


def test_the_target_loss_reaches_the_source_side_only_through_the_cross_connection():
    conet, model = _one_unit_model()
    _, logit_t = model.towers(torch.tensor([0]), torch.tensor([0]), torch.tensor([1]))
    F.binary_cross_entropy_with_logits(logit_t, torch.ones(1)).backward()
    # b1 = relu(W_B b0 + H a0): the book's embedding and H get gradient, the source tower's own layers none
    assert model.source_items.weight.grad[0].abs().sum() > 0 and model.cross[0].weight.grad.abs().sum() > 0
    assert model.source_tower[0].weight.grad is None and model.source_out.weight.grad is None
    model.zero_grad(set_to_none=True)
    with torch.no_grad():
        model.cross[0].weight.zero_()
    _, logit_t = model.towers(torch.tensor([0]), torch.tensor([0]), torch.tensor([1]))
    F.binary_cross_entropy_with_logits(logit_t, torch.ones(1)).backward()
    assert model.source_items.weight.grad is None or model.source_items.weight.grad.abs().sum() == 0


def test_joint_loss_sums_both_domains_and_masks_the_domain_a_user_lacks():
    conet, model = _one_unit_model()
    source, target = conet.sides
    loss = _JointLogLoss(source, target, negatives=1, device=torch.device("cpu"))
    # user b has books only: the movie half of their examples counts for nothing
    batch = {"user": torch.tensor([1]), "item": torch.tensor([1]), "in_target": torch.tensor([False])}
    gen = torch.Generator().manual_seed(0)
    value = loss(model, batch, gen)
    replay = torch.Generator().manual_seed(0)
    torch.rand(1, generator=replay)  # b's paired book (unused: the row is a book)
    torch.rand(1, generator=replay)  # b's paired movie (none: movie 0, masked)
    neg_book = int(torch.randint(0, 2, (1,), generator=replay))
    s_pos, _ = model.towers(torch.tensor([1]), torch.tensor([1]), torch.tensor([0]))
    s_neg, _ = model.towers(torch.tensor([1]), torch.tensor([neg_book]), torch.tensor([0]))
    expected = (F.softplus(-s_pos) + F.softplus(s_neg)) / 2  # log-loss of label 1 and label 0; movie half masked
    assert value.item() == pytest.approx(expected.item(), rel=1e-6)
    value.backward()
    assert model.target_out.weight.grad.abs().sum() == 0  # no target-domain loss for a user without movies


def test_a_negative_keeps_the_users_own_item_in_the_other_tower():
    """A movie negative of user a is paired with one of a's books, so the source side never reveals the label."""
    conet, model = _one_unit_model()
    source, target = conet.sides
    loss = _JointLogLoss(source, target, negatives=1, device=torch.device("cpu"))
    batch = {"user": torch.tensor([0]), "item": torch.tensor([1]), "in_target": torch.tensor([True])}
    value = loss(model, batch, torch.Generator().manual_seed(5))
    replay = torch.Generator().manual_seed(5)
    own_book = [0, 1][int(torch.rand(1, generator=replay) * 2)]  # a's books 0 and 1
    torch.rand(1, generator=replay)  # a's paired movie (unused: the row is a movie)
    torch.randint(0, 2, (1,), generator=replay)  # a book negative (unused: the row is a movie)
    neg_movie = int(torch.randint(0, 2, (1,), generator=replay))
    s_pos, t_pos = model.towers(torch.tensor([0]), torch.tensor([own_book]), torch.tensor([1]))
    _, t_neg = model.towers(torch.tensor([0]), torch.tensor([own_book]), torch.tensor([neg_movie]))
    expected = F.softplus(-s_pos) + (F.softplus(-t_pos) + F.softplus(t_neg)) / 2  # books: one positive; movies: both
    assert value.item() == pytest.approx(expected.item(), rel=1e-6)


def test_full_ranking_averages_the_target_logits_over_the_users_source_items():
    conet, model = _one_unit_model()
    scores = conet.score_users(model, torch.tensor([0, 1]))
    movies = model.target_items.weight
    for row, (user, books) in enumerate(((1.0, (0.5, -1.0)), (2.0, (-1.0,)))):  # a: books 0 and 1; b: book 1
        per_book = []
        for book in books:
            a = torch.tensor([[user, book]]).expand(2, 2)
            b = torch.cat([torch.full((2, 1), user), movies], 1)
            per_book.append(model.run(a, b)[1])
        torch.testing.assert_close(scores[row], torch.stack(per_book).mean(0))


def test_bad_layer_sizes_are_named():
    with pytest.raises(CrossbenchError, match="hidden must be layer sizes"):
        CoNet(hidden="32,x")
