"""CMF (Singh & Gordon, KDD 2008): one user factor matrix in both domains' losses, alpha-weighted.

Hand-computed losses on a three-user case, the shared factor's gradient from both domains, and
transfer to cold users on planted rank-2 ratings that no target interaction of theirs reveals.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from crossbench.data.model import CrossDomainData
from crossbench.data.protocols import FitSplit, GroundTruth
from crossbench.errors import CrossbenchError
from crossbench.plugin.interfaces import RunEnv
from crossbench_cdr.cmf import CMF, CMFModule, _JointLoss, _side_tensors
from crossbench_cdr.sources import two_sides


def _split(rows: list[tuple[str, int, int, float]], *, valid: GroundTruth | None = None) -> FitSplit:
    frame = pd.DataFrame(
        [(d, f"u{u}", f"{d[0]}{i}", t, r) for t, (d, u, i, r) in enumerate(rows)],
        columns=["domain", "user", "item", "timestamp", "rating"],
    )
    data = CrossDomainData.from_frames("hand", frame, domain_order=["books", "movies"])
    empty = GroundTruth.from_pairs(np.zeros(0, np.int64), np.zeros(0, np.int64))
    return FitSplit(protocol="hand", target="movies", train=data, valid=valid or empty)


def _hand_model(cmf: CMF, split: FitSplit) -> CMFModule:
    """dim 1: users (1, 2, 3), books (1, 3), movies (2)."""
    model = cmf.build(split, RunEnv(registry=None))  # type: ignore[arg-type]
    with torch.no_grad():
        model.users.weight.copy_(torch.tensor([[1.0], [2.0], [3.0]]))
        model.source_items.weight.copy_(torch.tensor([[1.0], [3.0]]))
        model.target_items.weight.copy_(torch.tensor([[2.0]]))
    return model


ROWS = [("books", 0, 0, 2.0), ("books", 1, 1, 5.0), ("movies", 1, 0, 3.5), ("books", 2, 0, 1.0)]


def test_rating_loss_is_the_alpha_weighted_sum_of_both_domains_squared_errors():
    split = _split(ROWS)
    cmf = CMF(objective="rating", dim=1, alpha=0.25, l2=0.0)
    model = _hand_model(cmf, split)
    loss = _JointLoss(cmf, {s.name: _side_tensors(s, "rating") for s in cmf.sides}, torch.device("cpu"))
    # rows 0, 1, 2 read books rows 0, 1, 2 and (3 mod 1 = 0) the one movies row three times
    value = loss(model, {"row": torch.tensor([0, 1, 2])}, torch.Generator().manual_seed(0))
    source = ((1 * 1 - 2.0) ** 2 + (2 * 3 - 5.0) ** 2 + (3 * 1 - 1.0) ** 2) / 3  # (1 + 1 + 4) / 3 = 2
    target = (2 * 2 - 3.5) ** 2  # 0.25
    assert value.item() == pytest.approx(0.25 * source + 0.75 * target)  # 0.6875


def test_the_one_user_factor_takes_gradient_from_both_domains():
    split = _split(ROWS)
    cmf = CMF(objective="rating", dim=1, alpha=0.25, l2=0.0)
    model = _hand_model(cmf, split)
    assert [n for n, _ in model.named_parameters() if "user" in n] == ["users.weight"]  # no per-domain user factor
    loss = _JointLoss(cmf, {s.name: _side_tensors(s, "rating") for s in cmf.sides}, torch.device("cpu"))
    loss(model, {"row": torch.tensor([1])}, torch.Generator()).backward()  # user 1: books item 1 and movies item 0
    # d/du of 0.25 (u*3 - 5)^2 + 0.75 (u*2 - 3.5)^2 at u = 2: 0.25*2*1*3 + 0.75*2*0.5*2 = 1.5 + 1.5
    assert model.users.weight.grad[1].item() == pytest.approx(3.0)
    assert model.users.weight.grad[0].item() == 0.0 and model.users.weight.grad[2].item() == 0.0


def test_ranking_loss_is_log_loss_on_positives_and_sampled_negatives():
    split = _split(ROWS)
    cmf = CMF(dim=1, alpha=1.0, negatives=1, l2=0.0)  # the source loss alone
    model = _hand_model(cmf, split)
    loss = _JointLoss(cmf, {s.name: _side_tensors(s, "ranking") for s in cmf.sides}, torch.device("cpu"))
    gen = torch.Generator().manual_seed(3)
    neg = torch.randint(0, 2, (1, 1), generator=torch.Generator().manual_seed(3)).item()
    value = loss(model, {"row": torch.tensor([1])}, gen)  # user 1 (u=2) took book 1 (v=3)
    sp = torch.nn.functional.softplus
    expected = (sp(torch.tensor(-6.0)) + sp(torch.tensor(2.0 * [1.0, 3.0][neg]))) / 2
    assert value.item() == pytest.approx(expected.item(), rel=1e-6)


def _planted(seed: int = 0) -> tuple[FitSplit, np.ndarray, np.ndarray]:
    """Ratings u . v of planted rank-2 factors, every pair observed; users 0-9 have no movie ratings."""
    rng = np.random.default_rng(seed)
    users, books, movies = rng.normal(size=(40, 2)), rng.normal(size=(12, 2)), rng.normal(size=(12, 2))
    rows = [("books", u, i, float(users[u] @ books[i])) for u in range(40) for i in range(12)]
    rows += [("movies", u, i, float(users[u] @ movies[i])) for u in range(10, 40) for i in range(12)]
    return _split(rows), users @ movies.T, np.arange(10)


def test_cold_users_get_target_ratings_through_the_shared_factor():
    """Users 0-9 never rated a movie; their movie ratings are predicted from the factor their books fitted."""
    split, truth, cold = _planted()
    cmf = CMF(objective="rating", dim=2, lr=0.05, epochs=150, batch_size=64, l2=0.0, init_std=0.1)
    report = cmf.fit(split, env=RunEnv(registry=None, seed=0, progress=False))  # type: ignore[arg-type]
    assert report.epochs == 150 and report.valid_score is None  # no validation users: every epoch runs
    users = split.train.user_ids
    index = {u: k for k, u in enumerate(users)}
    rows = torch.as_tensor([index[f"u{u}"] for u in cold])
    pred = cmf.score(rows).numpy()
    item_of = {v: k for k, v in enumerate(split.train.domain("movies").items["item_id"])}
    order = [item_of[f"m{i}"] for i in range(12)]
    corr = np.corrcoef(pred[:, order].ravel(), truth[cold].ravel())[0, 1]
    assert corr > 0.95, corr
    pairs = cmf.predict(rows[:1].repeat(12), torch.as_tensor(order))
    np.testing.assert_allclose(pairs.numpy(), pred[0, order], rtol=1e-5)


def test_bad_settings_are_named():
    with pytest.raises(CrossbenchError, match="alpha must be in"):
        CMF(alpha=1.5)
    with pytest.raises(CrossbenchError, match="objective"):
        CMF(objective="mse")


def test_rating_objective_needs_ratings():
    split = _split(ROWS)
    frame = split.train.domain("books").interactions.drop(columns=["rating"])
    domains = dict(split.train.domains)
    domains["books"] = type(domains["books"])(name="books", interactions=frame, items=domains["books"].items)
    no_ratings = FitSplit(protocol="hand", target="movies", train=split.train.with_domains(domains), valid=split.valid)
    with pytest.raises(CrossbenchError, match="needs ratings in every source domain"):
        CMF(objective="rating").fit(no_ratings, env=RunEnv(registry=None))  # type: ignore[arg-type]
    assert two_sides(split, "books", model="cmf")[0].domains == ("books",)
