"""DisenCDR (crossbench_cdr.disencdr): the Gaussian KL and the propagation matrices by hand, the
training draw's noise, each user's mix weight, the batch loss by hand (warm-up included), a cold
user scored through their source graph alone, negatives never a training positive, the kit's data."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hand_graphs import env, tiny_split
from torch.distributions import Normal, kl_divergence

from crossbench.errors import CrossbenchError
from crossbench.testing.data import kit_data, kit_split
from crossbench_cdr.disencdr import DisenCDR, DisenCDRModule, DisenLoss
from crossbench_cdr.disencdr_encoders import gaussian_kl, row_normalised, sample, scale
from crossbench_cdr.specs_disencdr import disencdr

# tiny_split: target films (u0-f0, u0-f1, u1-f0), source books (u0-b0, u2-b0);
# u0 shared, u1 films only, u2 books only (cold in the target)
SCALE0 = math.exp(0.1 + 0.9 * math.log(2.0))  # scale(0) = exp(0.1 + 0.9 softplus(0)) = 2.062327


def test_scale_and_gaussian_kl_by_hand():
    assert scale(torch.tensor(0.0)).item() == pytest.approx(SCALE0, rel=1e-6)
    # equal scales: KL = (m1 - m2)^2 / (2 s^2); rows (1, 3) and (0, 0) -> per entry 1/(2s^2), 9/(2s^2), 0, 0
    m1, m2, zero = torch.tensor([[1.0, 3.0], [0.0, 0.0]]), torch.zeros(2, 2), torch.zeros(2, 2)
    expected = (1 + 9) / (2 * SCALE0**2) / 2  # summed over columns, averaged over the 2 rows
    assert gaussian_kl(m1, zero, m2, zero).item() == pytest.approx(expected, rel=1e-6)
    # unequal scales against torch's closed form
    l1, l2 = torch.tensor([[0.5, -1.0]]), torch.tensor([[1.0, 2.0]])
    m1, m2 = torch.tensor([[0.3, -0.2]]), torch.tensor([[1.0, 0.0]])
    reference = kl_divergence(Normal(m1, scale(l1)), Normal(m2, scale(l2))).sum()
    assert gaussian_kl(m1, l1, m2, l2).item() == pytest.approx(reference.item(), rel=1e-6)


def test_a_training_draw_adds_noise_of_standard_deviation_exp_scale():
    mean, log_scale = torch.tensor([[1.0, -2.0]]), torch.zeros(1, 2)
    drawn, _ = sample(mean, log_scale, training=False)
    assert torch.equal(drawn, mean)
    torch.manual_seed(5)
    drawn, kl = sample(mean, log_scale, training=True)
    torch.manual_seed(5)
    eps = torch.randn(1, 2)
    torch.testing.assert_close(drawn, mean + eps * math.exp(SCALE0))
    prior = math.exp(0.1 + 0.9 * math.log1p(math.e))  # the prior's scale, log-scale 1: 3.6046
    by_hand = sum(math.log(prior / SCALE0) + (SCALE0**2 + m**2) / (2 * prior**2) - 0.5 for m in (1.0, -2.0))
    assert kl.item() == pytest.approx(by_hand, rel=1e-6)


def test_row_normalised_propagation_by_hand():
    # users x films of tiny_split: u0 took f0, f1 (twice f0: counted once); u1 took f0; u2 none
    uv = row_normalised(torch.tensor([0, 0, 0, 1]), torch.tensor([0, 1, 0, 0]), (3, 2)).to_dense()
    torch.testing.assert_close(uv, torch.tensor([[0.5, 0.5], [1.0, 0.0], [0.0, 0.0]]))


def test_mix_weights_are_each_users_source_share():
    model = DisenCDR(dim=2, hidden=2)
    model.build(tiny_split(), env())
    # u0: 1 book, 2 films -> 1/3; u1: films only -> 0; u2: books only -> 1
    torch.testing.assert_close(model.mix_weights(), torch.tensor([[1 / 3], [0.0], [1.0]]))
    fixed = DisenCDR(dim=2, hidden=2, share_rate=0.25)
    fixed.build(tiny_split(), env())
    torch.testing.assert_close(fixed.mix_weights(), torch.full((3, 1), 0.25))


class _Fixed:
    """Stands in for the module: fixed user and item vectors, KL 0.5; records the ``shared`` flags it was called with."""

    def __init__(self) -> None:
        self.calls: list[bool] = []

    def __call__(self, shared: bool = True):
        self.calls.append(shared)
        source = (torch.tensor([[1.0, 1.0], [5.0, 5.0], [0.0, 2.0]]), torch.tensor([[1.0, -1.0]]))
        # u0 scores both films 2 (so which film a draw picks for u0 does not matter), u1 scores f0 1 and f1 -3
        target = (torch.tensor([[1.0, 0.0], [0.0, 1.0], [7.0, 7.0]]), torch.tensor([[2.0, 1.0], [2.0, -3.0]]))
        return {"source": source, "target": target}, torch.tensor(0.5)


def test_the_batch_loss_by_hand_and_the_warm_up():
    model = DisenCDR(dim=2, hidden=2)
    model.build(tiny_split(), env())
    loss = DisenLoss(model.sides, batches_per_epoch=2, warmup_epochs=1, device=torch.device("cpu"))
    # rows: source (u0, b0), (u2, b0); target (u0, f0), (u0, f1), (u1, f0)
    batch = {"user": torch.tensor([0, 2, 0, 0, 1]), "item": torch.tensor([0, 0, 0, 1, 0]), "domain": torch.tensor([0, 0, 1, 1, 1])}
    fixed = _Fixed()
    value = loss(fixed, batch, torch.Generator().manual_seed(0))  # type: ignore[arg-type]
    sp = F.softplus
    # source: u1 has no books (row left out); u0's drawn book is b0; every negative is b0 (the only book)
    # logits u0.b0 = 0 (three rows), u2.b0 = -2
    x = torch.tensor([0.0, -2.0, 0.0, 0.0])
    source = sp(-x).mean() + sp(x).mean()
    # target: u2 has no films (row left out); positives u0 2, 2, 2 (row 0's drawn film), u1.f0 = 1;
    # negatives: u0 any film (2), u1 only f1 (-3)
    pos, neg = torch.tensor([2.0, 2.0, 2.0, 1.0]), torch.tensor([2.0, 2.0, 2.0, -3.0])
    target = sp(-pos).mean() + sp(neg).mean()
    assert value.item() == pytest.approx((0.5 + source + target).item(), rel=1e-6)
    assert value.item() == pytest.approx(3.8840, abs=1e-4)
    loss(fixed, batch, torch.Generator())  # type: ignore[arg-type]
    loss(fixed, batch, torch.Generator())  # type: ignore[arg-type]
    assert fixed.calls == [False, False, True]  # epoch 1 (two batches) is the warm-up


def _module(share_rate: float | None = None) -> tuple[DisenCDR, DisenCDRModule]:
    model = DisenCDR(dim=3, hidden=4, dropout=0.0, share_rate=share_rate)
    torch.manual_seed(0)
    return model, model.build(tiny_split(), env()).eval()


def test_a_cold_users_shared_part_comes_from_their_source_graph_alone():
    model, m = _module()
    cold = torch.tensor([2])  # u2: books only
    with torch.no_grad():
        before = model.score_users(m, cold)
        m.tables["target_shared"].weight[2] += 10.0  # their target-side shared row: weight 1 - 1 = 0
        torch.testing.assert_close(model.score_users(m, cold), before)
        m.tables["source_shared"].weight[2] += 1.0  # their source-side shared row: moves their target scores
        assert not torch.allclose(model.score_users(m, cold), before)
    model, m = _module(share_rate=0.5)  # one weight for everyone: the target-side row counts again
    with torch.no_grad():
        before = model.score_users(m, cold)
        m.tables["target_shared"].weight[2] += 10.0
        assert not torch.allclose(model.score_users(m, cold), before)


def test_scores_are_the_target_user_vector_times_the_item_vectors():
    model, m = _module()
    with torch.no_grad():
        out, _ = m(shared=True)
        users, items = out["target"]
        torch.testing.assert_close(model.score_users(m, torch.tensor([1, 0])), users[[1, 0]] @ items.T)
        specific, _ = m(shared=False)
        assert not torch.allclose(specific["target"][0], users)  # the shared part is added to the users only
        torch.testing.assert_close(specific["target"][1], items)


def test_negatives_are_never_a_training_positive():
    split = kit_split(kit_data()).fit_view()
    model = DisenCDR(dim=2, hidden=2)
    model.build(split, env())
    loss = DisenLoss(model.sides, batches_per_epoch=1, warmup_epochs=0, device=torch.device("cpu"))
    target = model.sides[1]
    gen = torch.Generator().manual_seed(1)
    for user in range(len(target.counts())):
        taken = set(target.csr_items[target.indptr[user]:target.indptr[user + 1]].tolist())
        draws = set(loss.negatives("target", torch.full((300,), user), gen).tolist())
        if len(taken) < target.n_items:
            assert not draws & taken and draws <= set(range(target.n_items))
    tiny = DisenCDR(dim=2, hidden=2)
    tiny.build(tiny_split(), env())
    small = DisenLoss(tiny.sides, batches_per_epoch=1, warmup_epochs=0, device=torch.device("cpu"))
    assert set(small.negatives("target", torch.full((100,), 1), gen).tolist()) == {1}  # u1 took f0 only
    assert set(small.negatives("target", torch.full((100,), 0), gen).tolist()) == {0, 1}  # u0 took both: any film


def test_fit_on_the_kit_data_is_deterministic():
    split = kit_split(kit_data()).fit_view()
    runs = []
    for _ in range(2):
        model = DisenCDR(dim=8, hidden=8, epochs=3, warmup_epochs=1, patience=2, batch_size=64)
        report = model.fit(split, env=env())
        runs.append(model.score(torch.arange(split.train.n_users)))
    assert torch.equal(runs[0], runs[1])
    assert runs[0].shape == (split.train.n_users, split.train.domain(split.target).n_items)
    assert report.valid_metric == "ndcg@10" and 1 <= report.epochs <= 3
    assert model.reads_source_domains() and model.cold_users().startswith("from source-domain history")


def test_settings_are_checked_and_the_factory_keeps_the_defaults():
    with pytest.raises(CrossbenchError, match=r"'disencdr': dropout must be in \[0, 1\)"):
        DisenCDR(dropout=1.0)
    with pytest.raises(CrossbenchError, match=r"'disencdr': share_rate must be in \[0, 1\]"):
        DisenCDR(share_rate=2.0)
    with pytest.raises(CrossbenchError, match="'disencdr': dim, hidden, layers"):
        DisenCDR(layers=0)
    assert disencdr().settings() == DisenCDR().settings()
    assert DisenCDR().settings()["dim"] == 128 and DisenCDR().settings()["warmup_epochs"] == 9


def test_the_graph_convolution_and_its_gradient_match_a_dense_product():
    from crossbench_cdr.disencdr_encoders import GraphConv

    torch.manual_seed(0)
    conv = GraphConv(3, 2, leaky=0.1)
    p = row_normalised(torch.tensor([0, 0, 1, 2]), torch.tensor([1, 3, 0, 3]), (3, 4))
    prop = (p.to_sparse_csr(), p.t().coalesce().to_sparse_csr())
    x = torch.randn(4, 3, requires_grad=True)
    conv(x, prop).pow(2).sum().backward()
    x2 = x.detach().clone().requires_grad_(True)
    F.leaky_relu(p.to_dense() @ (x2 @ conv.weight) + conv.bias, 0.1).pow(2).sum().backward()
    torch.testing.assert_close(x.grad, x2.grad)


def test_the_fidelity_split_file_format_and_sampled_metrics_by_hand(tmp_path):
    """benchmarks/fidelity_disencdr.py on hand-made frames: one held-out item per user and domain,
    the authors' file layout, negatives outside the user's training items, HR/NDCG@10 by hand."""
    import sys
    from pathlib import Path

    import numpy as np
    import pandas as pd

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from fidelity_disencdr import hr_ndcg, loo_task, sampled_candidates, write_disencdr

    # users 10 and 11 have three items in each domain; user 12 has one source item (left out)
    src = pd.DataFrame({"user": [10, 10, 10, 11, 11, 11, 12], "item": [0, 1, 2, 0, 1, 2, 0]})
    tgt = pd.DataFrame({"user": [10, 10, 10, 11, 11, 11, 12], "item": [5, 6, 7, 5, 6, 7, 5]})
    task = loo_task(src, tgt, seed=0)
    assert task.n_users == 2 and len(task.source) == 4 and len(task.target) == 4
    assert set(task.source_test["user"]) <= {0, 1} and set(task.target_test["user"]) <= {0, 1}
    name = write_disencdr(task, tmp_path, source_name="a", target_name="b")
    assert name == "a_b"
    lines = (tmp_path / "dataset" / "b_a" / "train.txt").read_text().splitlines()
    assert [line.split("\t")[0] for line in lines] == ["0", "0", "1", "1"] and all(line.endswith("\t1") for line in lines)
    assert task.reference_rate() == pytest.approx(0.5)  # the last user: 2 source, 2 target training items
    users, cands = sampled_candidates(task.target, task.target_test, task.n_target_items, seed=3)
    assert cands.shape == (len(users), 1000)
    for u, row in zip(users, cands):
        own = set(task.target[task.target["user"] == u]["item"])
        assert not set(row[1:].tolist()) & own
    # ranks 0, 3 and 12 (positive first): HR 2/3, NDCG (1 + 1/log2(5)) / 3
    scores = torch.zeros(3, 1000)
    scores[:, 0] = torch.tensor([5.0, 1.0, 1.0])
    scores[1, 1:4] = 2.0
    scores[2, 1:13] = 2.0
    hr, ndcg = hr_ndcg(scores)
    assert hr == pytest.approx(2 / 3) and ndcg == pytest.approx((1 + 1 / np.log2(5)) / 3)
