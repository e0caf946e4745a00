"""LightGCN (crossbench_cdr.lightgcn): propagation and loss against hand computations, negatives,
how each variant serves users with no target interactions, and fitting on the kit's data."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hand_graphs import env, tiny_split

from crossbench.errors import CrossbenchError
from crossbench.testing.data import kit_data, kit_split
from crossbench_cdr.lightgcn import LightGCN, LightGCNModule, NegativeSampler, bpr_loss

R2 = math.sqrt(2.0)



def hand_module(graph: str) -> LightGCNModule:
    module = LightGCN(graph=graph, dim=1, layers=2).build(tiny_split(), env())
    with torch.no_grad():
        module.user.weight.copy_(torch.tensor([[1.0], [2.0], [5.0]]))
        module.item.weight.copy_(torch.tensor([[3.0], [4.0], [6.0]])[: module.item.num_embeddings])
    return module.eval()


def test_propagation_matches_the_hand_computation():
    """Target graph u0-f0, u0-f1, u1-f0 with ego u0 1, u1 2, f0 3, f1 4 (u2 isolated, 5), K = 2.

    Layer 1: u0 = 3/2 + 4/√2, u1 = 3/√2, f0 = 1/2 + 2/√2, f1 = 1/√2; layer 2: u0 = f0/2 + f1/√2,
    u1 = f0/√2, f0 = u0/2 + u1/√2, f1 = u0/√2; final = the mean of the three layers.
    """
    users, items = hand_module("target").propagate()
    torch.testing.assert_close(users.squeeze(1), torch.tensor([2.261845, 1.824958, 5.0 / 3]))
    torch.testing.assert_close(items.squeeze(1), torch.tensor([2.859476, 2.589256]))


def test_bpr_loss_and_l2_by_hand():
    module = hand_module("target")
    final = module.propagate()
    # user u1, positive f0, negative f1: margin = 1.824958 * (2.859476 - 2.589256) = 0.493140
    loss = bpr_loss(torch.tensor([1]), torch.tensor([0]), torch.tensor([1]), final, (module.user, module.item), l2=0.1)
    margin = 1.824958 * (2.859476 - 2.589256)
    bpr = math.log1p(math.exp(-margin))  # 0.476669
    reg = 0.1 * (2.0**2 + 3.0**2 + 4.0**2) / 2  # l2 * (|e_u|^2 + |e_i|^2 + |e_j|^2) / (2 * batch)
    assert loss.item() == pytest.approx(bpr + reg, abs=1e-5)
    assert bpr == pytest.approx(0.476669, abs=1e-5)


def test_scores_and_cold_users_of_each_variant():
    target = hand_module("target")
    s = target.scores(torch.tensor([0, 1, 2]))
    torch.testing.assert_close(s[0], torch.tensor([2.261845 * 2.859476, 2.261845 * 2.589256]))
    assert torch.equal(s[2], torch.zeros(2)), "a user with no target edge is scored all-tied"
    merged = hand_module("merged")
    assert merged.target_items == slice(0, 2) and merged.graph.n_items == 3
    s = merged.scores(torch.tensor([2]))
    assert s.abs().min() > 0 and s[0, 0] != s[0, 1], "the merged graph reaches the cold user's target items"
    model = LightGCN(graph="target")
    assert model.cold_users().startswith("cannot serve") and not model.reads_source_domains()
    assert LightGCN(graph="merged").reads_source_domains()


def test_the_cold_users_items_are_reached_through_the_shared_user():
    """u2's merged-graph embedding depends on f0 (3 hops: f0 - u0 - b0 - u2), not without u0's books edge."""
    merged = hand_module("merged")
    merged.item.weight.requires_grad_(True)
    u, _ = merged.propagate()
    grad = torch.autograd.grad(u[2].sum(), merged.item.weight)[0].squeeze(1)
    assert grad[0].item() == 0.0  # f0 is 3 hops away; K = 2
    module = LightGCN(graph="merged", dim=1, layers=3).build(tiny_split(), env())
    u, _ = module.propagate()
    grad = torch.autograd.grad(u[2].sum(), module.item.weight)[0].squeeze(1)
    # Â[u2,b0] Â[b0,u0] Â[u0,f0] / 4 = (1/√2)(1/√(2·3))(1/√(3·2)) / 4
    assert grad[0].item() == pytest.approx((1 / R2) * (1 / math.sqrt(6)) * (1 / math.sqrt(6)) / 4)


def test_negatives_avoid_the_users_positives():
    users = np.array([0, 0, 0, 1])
    items = np.array([0, 1, 2, 4])  # domain A items 0-2, domain B items 3-4
    sampler = NegativeSampler(users, items, 5)
    gen = torch.Generator().manual_seed(0)
    u = torch.tensor([0] * 200 + [1] * 200)
    low = torch.tensor([0] * 100 + [3] * 100 + [3] * 100 + [0] * 100)
    high = low + torch.where(low == 0, 3, 2)
    neg = sampler.sample(u, low, high, gen)
    assert bool(((neg >= low) & (neg < high)).all())
    assert set(neg[100:200].tolist()) == {3, 4}  # user 0 has no item of B
    assert set(neg[200:300].tolist()) == {3}  # user 1 took 4
    assert set(neg[300:].tolist()) == {0, 1, 2}
    assert not bool(sampler.is_positive(u[200:300], neg[200:300]).any())
    # user 0 took every item of A: nothing else to draw, the draw stays in range
    assert bool(((neg[:100] >= 0) & (neg[:100] < 3)).all())


@pytest.mark.parametrize("graph", ["target", "merged"])
def test_fit_is_deterministic_and_early_stops_on_validation(graph):
    split = kit_split(kit_data()).fit_view()
    runs = []
    for _ in range(2):
        model = LightGCN(graph=graph, dim=8, layers=2, lr=0.01, epochs=4, patience=2, batch_size=64)
        report = model.fit(split, env=env())
        runs.append(model.score(torch.arange(split.train.n_users)))
    assert torch.equal(runs[0], runs[1])
    assert runs[0].shape == (split.train.n_users, split.train.domain(split.target).n_items) and runs[0].dtype == torch.float32
    assert report.valid_metric == "ndcg@10" and 1 <= report.epochs <= 4 and len(report.history) == report.epochs
    cold = np.setdiff1d(np.arange(split.train.n_users), split.train.domain(split.target).users())
    rows = runs[0][torch.as_tensor(cold)]
    if graph == "target":
        assert torch.equal(rows, torch.zeros_like(rows))
    else:
        assert bool((rows.std(dim=1) > 0).all()), "every cold user of the kit has source items"
    users, items = model.embeddings()
    assert users.shape == (split.train.n_users, 8) and items.shape == (split.train.domain(split.target).n_items, 8)


def test_settings_are_checked():
    with pytest.raises(CrossbenchError, match=r"lightgcn: unknown graph 'both' \(available: merged, target\)"):
        LightGCN(graph="both")
    with pytest.raises(CrossbenchError, match="lightgcn: layers >= 0"):
        LightGCN(layers=-1)
