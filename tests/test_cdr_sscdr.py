"""SSCDR (Kang et al., CIKM 2019): the mapping learns on overlapping users only with both domains'
vectors frozen; its loss, the multi-hop inference and the distance scores on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from crossbench.data.model import CrossDomainData
from crossbench.data.protocols import FitSplit, GroundTruth
from crossbench.plugin.interfaces import RunEnv
from crossbench.testing.data import TARGET, kit_data, kit_split
from crossbench.train.stages import run_stage, validation_score
from crossbench_cdr.sscdr import SSCDR, SSCDRModule, _MappingLoss, ball

ENV = RunEnv(registry=None, seed=0, progress=False)  # type: ignore[arg-type]


def test_the_mapping_sees_only_overlapping_users_and_leaves_the_factors_unchanged():
    split = kit_split(kit_data()).fit_view()
    sscdr = SSCDR(dim=8, hidden=8, epochs=3, map_epochs=4, patience=10)
    model = sscdr.build(split, ENV)
    pretrain, mapping = sscdr.stages(split, model, ENV)[:2], sscdr.stages(split, model, ENV)[2]
    both = np.intersect1d(split.train.domain("books").users(), split.train.domain(TARGET).users())
    assert sorted(mapping.data.columns["user"].tolist()) == both.tolist()
    assert not set(both) & set(split.valid.users.tolist())  # cold validation users have no target training rows
    assert mapping.trains == ("mapping.",) and [s.trains for s in pretrain] == [("source_",), ("target_",)]

    for stage in pretrain:
        run_stage(model, stage, split=split, env=ENV, score=sscdr.score)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    sscdr.model = model
    report = run_stage(model, mapping, split=split, env=ENV, score=sscdr.score)
    after = model.state_dict()
    for name in before:
        if name.startswith("mapping."):
            continue
        assert torch.equal(before[name], after[name]), f"{name} changed during the mapping stage"
    assert report.train_samples == report.epochs * len(both)
    assert report.trained_parameters == sum(p.numel() for p in model.mapping.parameters())
    assert report.valid_score == pytest.approx(validation_score(sscdr.score, split, k=10, device=torch.device("cpu")))


def _hand_split() -> FitSplit:
    """Users a, b, c; books 0-2: a took 0 and 1, b took 1 and 2, c took 2; only c took a movie."""
    rows = [("books", "a", 0), ("books", "a", 1), ("books", "b", 1), ("books", "b", 2), ("books", "c", 2), ("movies", "c", 0)]
    frame = pd.DataFrame([(d, u, f"{d[0]}{i}", t, 5.0) for t, (d, u, i) in enumerate(rows)],
                         columns=["domain", "user", "item", "timestamp", "rating"])
    data = CrossDomainData.from_frames("hand", frame, domain_order=["books", "movies"])
    return FitSplit(protocol="hand", target="movies", train=data, valid=GroundTruth.from_pairs(np.zeros(0, np.int64), np.zeros(0, np.int64)))


def _hand_model(hops: int) -> tuple[SSCDR, SSCDRModule]:
    sscdr = SSCDR(dim=2, hidden=2, hops=hops)
    model = sscdr.build(_hand_split(), ENV)
    model.mapping = nn.Sequential()  # the identity: mapped vectors are the source vectors (inside the ball)
    with torch.no_grad():
        model.source_users.weight.copy_(torch.tensor([[0.2, 0.0], [0.0, 0.6], [0.9, 0.0]]))
        model.source_items.weight.copy_(torch.tensor([[0.0, 0.4], [0.4, 0.2], [0.0, 0.0]]))
        model.target_users.weight.copy_(torch.tensor([[0.0, 0.0], [0.0, 0.0], [3.0, 4.0]]))
        model.target_items.weight.copy_(torch.tensor([[0.5, 0.5]]))
    return sscdr, model


def test_ball_projects_onto_the_unit_ball():
    torch.testing.assert_close(ball(torch.tensor([[3.0, 4.0], [0.3, 0.4]])), torch.tensor([[0.6, 0.8], [0.3, 0.4]]))


@pytest.mark.parametrize(
    ("hops", "expected"),
    [
        (0, [0.2, 0.0]),  # the user alone
        (1, [0.2, 0.2]),  # mean of a (0.2, 0), book 0 (0, 0.4), book 1 (0.4, 0.2)
        (2, [0.15, 0.3]),  # ... and b (0, 0.6), who shares book 1: (0.6, 1.2) / 4
    ],
)
def test_multi_hop_inference_averages_the_mapped_neighbourhood(hops, expected):
    sscdr, model = _hand_model(hops)
    user_a = torch.tensor([0])
    torch.testing.assert_close(sscdr.cold_vectors(model, user_a), torch.tensor([expected]))


def test_scores_are_negative_squared_distances_warm_users_by_their_target_vector():
    sscdr, model = _hand_model(1)
    scores = sscdr.score_users(model, torch.tensor([0, 2]))
    # a is cold: (0.2, 0.2) to (0.5, 0.5): 0.09 + 0.09; c is warm: ball(3, 4) = (0.6, 0.8): 0.01 + 0.09
    torch.testing.assert_close(scores, torch.tensor([[-0.18], [-0.10]]))


def test_mapping_loss_is_supervised_plus_lambda_times_the_hinge_over_source_items():
    sscdr, model = _hand_model(1)
    loss = _MappingLoss(sscdr.sides[0], margin=0.5, lam=0.25)
    gen = torch.Generator().manual_seed(7)
    value = loss(model, {"user": torch.tensor([2])}, gen)  # c: source (0.9, 0), target ball(3, 4) = (0.6, 0.8)
    replay = torch.Generator().manual_seed(7)
    torch.rand(1, generator=replay)  # c's positive: their one book, item 2 at (0, 0)
    neg = int(torch.randint(0, 3, (1,), generator=replay))
    books = [(0.0, 0.4), (0.4, 0.2), (0.0, 0.0)]
    d2 = lambda p: (p[0] - 0.6) ** 2 + (p[1] - 0.8) ** 2  # noqa: E731
    supervised = (0.9 - 0.6) ** 2 + 0.8**2  # 0.73
    hinge = max(0.0, 0.5 + d2(books[2]) - d2(books[neg]))
    assert value.item() == pytest.approx(supervised + 0.25 * hinge, rel=1e-6)
