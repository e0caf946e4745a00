"""CDRIB (crossbench_cdr.cdrib, crossbench_cdr.cdrib_encoder): the mean-aggregation graph and one graph
convolution by hand, the bounded Gaussian's KL by hand, which domain's latent each user is scored with
(a cold user's target scores read their source latent only), the joint loss by hand, negatives that never
hit a training positive, fitting on the kit's data."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from hand_graphs import env, tiny_split
from torch.distributions import Normal, kl_divergence

from crossbench.errors import CrossbenchError
from crossbench.testing.data import kit_data, kit_split
from crossbench_cdr.cdrib import CDRIB, CDRIBModule, JointLoss, UntakenItems
from crossbench_cdr.cdrib_encoder import GraphConv, bounded_sigma, gaussian_kl, mean_adjacency

# tiny_split: target films (u0-f0, u0-f1, u1-f0), source books (u0-b0, u2-b0);
# u0 shared, u1 films only, u2 books only (cold in the target)


def fitted_module(**kw) -> tuple[CDRIB, CDRIBModule]:
    cdrib = CDRIB(dim=2, layers=2, dropout=0.0, user_batch_size=4, **kw)
    torch.manual_seed(0)
    return cdrib, cdrib.build(tiny_split(), env()).eval()


def test_mean_adjacency_divides_each_row_by_its_sum():
    # u0 took i0 twice and i1 once; u1 took i1; u2 nothing
    uv, vu = mean_adjacency(np.array([0, 0, 0, 1]), np.array([0, 0, 1, 1]), n_users=3, n_items=2)
    torch.testing.assert_close(uv.to_dense(), torch.tensor([[2 / 3, 1 / 3], [0.0, 1.0], [0.0, 0.0]]))
    torch.testing.assert_close(vu.to_dense(), torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0]]))


def test_graph_convolution_by_hand():
    conv = GraphConv(2, 1, leaky=0.1)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[1.0], [-2.0]]))
        conv.bias.fill_(0.5)
    _, vu = mean_adjacency(np.array([0, 1]), np.array([0, 0]), n_users=2, n_items=1)  # item 0: mean of u0, u1
    x = torch.tensor([[1.0, 3.0], [2.0, 1.0]])  # x @ W = (-5, 0); mean -2.5; + 0.5 = -2 -> leaky: -0.2
    torch.testing.assert_close(conv(x, vu), torch.tensor([[-0.2]]))


def test_the_bounded_gaussian_and_its_kl_by_hand():
    prior = math.exp(0.1 + 0.9 * math.log1p(math.exp(0.4)))  # the prior's scale: logstd 1, clamped to 0.4
    assert bounded_sigma(torch.tensor(7.0)).item() == pytest.approx(prior)
    assert bounded_sigma(torch.tensor(-30.0)).item() == pytest.approx(math.exp(0.1), rel=1e-6)
    # at the prior's own scale the KL is mean^2 / (2 prior^2): rows (1, 0) and (3, 0) average 5 / (2 prior^2)
    mean, sigma = torch.tensor([[1.0, 0.0], [3.0, 0.0]]), torch.full((2, 2), prior)
    assert gaussian_kl(mean, sigma).item() == pytest.approx(5 / (2 * prior**2), rel=1e-5)
    mean, sigma = torch.tensor([[0.3, -1.0]]), torch.tensor([[1.2, 2.0]])
    expected = kl_divergence(Normal(mean, sigma), Normal(torch.zeros(1, 2), torch.full((1, 2), prior))).sum()
    assert gaussian_kl(mean, sigma).item() == pytest.approx(expected.item(), rel=1e-6)


def test_each_user_is_scored_with_the_other_domains_latent_where_they_have_one():
    _, m = fitted_module()
    assert m.has.tolist() == [[True, True], [False, True], [True, False]] and m.overlap.tolist() == [0]
    su = torch.tensor([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0]])
    tu = torch.tensor([[0.0, 1.0], [0.0, 2.0], [0.0, 3.0]])
    in_source, in_target = m.domain_users(su, tu)
    # u0 (both) crosses over in both domains; in the target, u1 (films only) keeps their own latent and the
    # cold u2 (books only) is read through their source latent; in the source, u1's row is their target latent
    torch.testing.assert_close(in_target, torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0]]))
    torch.testing.assert_close(in_source, torch.tensor([[0.0, 1.0], [0.0, 2.0], [3.0, 0.0]]))


def test_a_cold_users_target_scores_depend_on_their_source_side_only():
    cdrib, m = fitted_module()
    with torch.no_grad():
        su, _, _, ti, _, _ = m.encode()
        scores = cdrib.score_users(m, torch.tensor([2]))
        torch.testing.assert_close(scores, (su[2] @ ti.T)[None])  # u2's source latent against the film latents
        m.target_users.weight[2] = torch.tensor([40.0, -70.0])  # u2's unused target embedding: no effect
        torch.testing.assert_close(cdrib.score_users(m, torch.tensor([2])), scores)
        m.source_users.weight[2] += torch.tensor([3.0, -1.0])  # their source embedding moves their scores
        assert not torch.allclose(cdrib.score_users(m, torch.tensor([2])), scores)


def test_joint_loss_by_hand():
    cdrib, m = fitted_module(margin=0.3)
    loss = JointLoss(cdrib.sides, margin=0.3, critic="hinge", user_batch_size=4, device=torch.device("cpu"))
    # source row (u0, b0): u0 took the only book, so its negative is b0; target row (u1, f0): its negative is f1
    batch = {"user": torch.tensor([0, 1]), "item": torch.tensor([0, 0]), "domain": torch.tensor([0, 1])}
    with torch.no_grad():
        value = loss(m, batch, torch.Generator().manual_seed(5))
        su, si, tu, ti, kl_s, kl_t = m.encode()  # evaluation mode: the means, no dropout
        replay = torch.Generator().manual_seed(5)
        own = torch.tensor([0])[torch.randperm(1, generator=replay)[:1]]
        other_t, other_s = torch.randperm(3, generator=replay)[:1], torch.randperm(3, generator=replay)[:1]
        critic = lambda a, b: torch.sigmoid(m.critic(torch.cat([a, b], 1)).view(-1))  # noqa: E731
        pos = critic(su[own], tu[own])
        hinge = F.relu(0.3 - pos + critic(su[own], tu[other_t])).mean() + F.relu(0.3 - pos + critic(su[other_s], tu[own])).mean()
        s_pos = s_neg = tu[0] @ si[0]  # u0 is shared: their SOURCE scores read their TARGET latent
        t_pos, t_neg = tu[1] @ ti[0], tu[1] @ ti[1]  # u1 has no source history: own target latent
        bce = F.softplus(-s_pos) + F.softplus(s_neg) + F.softplus(-t_pos) + F.softplus(t_neg)
        expected = kl_s + kl_t + hinge + bce
    assert value.item() == pytest.approx(expected.item(), rel=1e-6)
    # beta weighs the users' KL only: the KL terms grow by (beta' - beta) * user KL
    m.beta = 2.5
    with torch.no_grad():
        *_, kl_s2, _ = m.encode()
        user_kl = m.source_encoder(m.source_users.weight, m.source_items.weight, m.source_uv, m.source_vu, beta=1.0)[2] \
            - m.source_encoder(m.source_users.weight, m.source_items.weight, m.source_uv, m.source_vu, beta=0.0)[2]
    assert (kl_s2 - kl_s).item() == pytest.approx(1.0 * user_kl.item(), rel=1e-5)


def test_negatives_are_never_training_positives_and_cover_the_rest():
    split = kit_split(kit_data()).fit_view()
    cdrib = CDRIB(dim=4, layers=2)
    cdrib.build(split, env())
    target = cdrib.sides[1]
    sampler = UntakenItems(target, torch.device("cpu"))
    user = int(target.counts().argmax())
    taken = set(target.csr_items[target.indptr[user]:target.indptr[user + 1]].tolist())
    draws = sampler.draw(torch.full((3000,), user), torch.Generator().manual_seed(1))
    counts = torch.bincount(draws, minlength=target.n_items).float()
    free = [i for i in range(target.n_items) if i not in taken]
    assert taken and all(counts[i] == 0 for i in taken) and all(counts[i] > 0 for i in free)
    expected = 3000 / len(free)
    assert ((counts[free] - expected).abs() / expected).max() < 0.3, (counts, expected)
    # a user who took every item gets any item (tiny split: u0 took both films)
    tiny, _ = fitted_module()
    everything = UntakenItems(tiny.sides[1], torch.device("cpu")).draw(torch.zeros(200, dtype=torch.long), torch.Generator().manual_seed(0))
    assert set(everything.tolist()) == {0, 1}


@pytest.mark.slow
def test_fit_on_the_kit_data_is_deterministic():
    split = kit_split(kit_data()).fit_view()
    runs = []
    for _ in range(2):
        model = CDRIB(dim=8, layers=2, epochs=2, batch_size=128, user_batch_size=8, lr=0.01)
        report = model.fit(split, env=env())
        runs.append(model.score(torch.arange(split.train.n_users)))
    assert torch.equal(runs[0], runs[1])
    assert runs[0].shape == (split.train.n_users, split.train.domain(split.target).n_items)
    assert report.valid_metric == "ndcg@10" and report.epochs == 2
    assert model.reads_source_domains() and model.cold_users().startswith("from source-domain history")
    assert report.train_samples == 2 * sum(len(split.train.domain(d).interactions) for d in split.train.domain_names)


def test_settings_are_checked():
    with pytest.raises(CrossbenchError, match="'cdrib': critic unknown loss 'mse'"):
        CDRIB(critic="mse")
    with pytest.raises(CrossbenchError, match=r"'cdrib': dropout must be in \[0, 1\)"):
        CDRIB(dropout=1.0)
    with pytest.raises(CrossbenchError, match="'cdrib': dim, layers"):
        CDRIB(layers=0)
    defaults = CDRIB().settings()
    assert (defaults["dim"], defaults["layers"], defaults["beta"], defaults["epochs"], defaults["patience"]) == (128, 3, 1.5, 100, 100)


# --------------------------------------------------------------------------- the fidelity benchmark's protocol


def _benchmarks():  # noqa: ANN202
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import fidelity_cdrib

    return fidelity_cdrib


def test_the_authors_sampled_metrics_by_hand():
    bench = _benchmarks()
    scores = np.array([[0.5, 0.9, 0.1, 0.4]])
    # case 1: positive item 0 (0.5); only item 1 scores above it: rank 1
    # case 2: positive item 1 (0.9), nothing above: rank 0
    for ties in bench.TIES:
        got = bench.sampled_metrics(scores, np.array([0, 0]), np.array([[0, 1, 2, 3], [1, 0, 2, 2]]), ties=ties)
        assert got["mrr"] == pytest.approx(0.75) and got["hr@1"] == pytest.approx(0.5) and got["hr@5"] == pytest.approx(1.0)
        assert got["ndcg@5"] == pytest.approx((1 / math.log2(3) + 1) / 2) and got["ndcg@10"] == got["ndcg@5"]
    with pytest.raises(ValueError, match="ties must be one of"):
        bench.sampled_metrics(scores, np.array([0]), np.array([[0, 1]]), ties="random")


def test_ties_with_copies_of_the_positive_rank_as_the_authors_argsort_does():
    bench = _benchmarks()
    # the positive (column 0) tied with 999 copies of itself: "favour" gives rank 0 (MRR 1); the authors'
    # argsort puts it wherever torch's unstable sort leaves it, between 0 and 999
    tied = np.full((1, 1000), 0.5)
    favour = bench.sampled_metrics(tied, np.array([0]), np.arange(1000)[None], ties="favour")
    assert favour["mrr"] == 1.0 and favour["hr@1"] == 1.0
    torch_rank = int((-torch.full((1000,), 0.5)).argsort().argsort()[0])
    assert 0 <= torch_rank <= 999 and bench.authors_ranks(tied).tolist() == [torch_rank]
    authors = bench.sampled_metrics(tied, np.array([0]), np.arange(1000)[None])
    assert authors["mrr"] == pytest.approx(1 / (torch_rank + 1)) and authors["hr@10"] == float(torch_rank < 10)
    # without ties the argsort rank is the count of candidates above the positive
    scores = np.array([[0.3, 0.9, 0.8, 0.1]], dtype=np.float32)
    assert bench.authors_ranks(scores).tolist() == [2]


def test_the_authors_split_holds_out_a_tenth_of_the_common_users_per_direction(tmp_path):
    bench = _benchmarks()
    common = [(u, i) for u in range(30) for i in range(6)]  # every item rated 30 times, every user 6 times
    source = pd.DataFrame(common, columns=["user", "item"])
    target = pd.DataFrame(common + [(99, i) for i in range(6)], columns=["user", "item"])  # user 99: target only
    task = bench.cdrib_task(source, target, seed=3)
    assert (task.n_common, task.n_users) == (30, 31)
    # L = 3: common users 24, 25, 26 are cold in the target, 27, 28, 29 in the source
    assert set(task.target_test["user"]) | set(task.target_valid["user"]) == {24, 25, 26}
    assert not set(task.target_train["user"]) & {24, 25, 26} and not set(task.source_train["user"]) & {27, 28, 29}
    assert len(task.target_test) + len(task.target_valid) == 18 and len(task.source_test) + len(task.source_valid) == 18
    name = bench.write_cdrib(task, tmp_path, source_name="books", target_name="films")
    assert name == "books_films"
    lines = (tmp_path / "dataset" / "films_books" / "train.txt").read_text().splitlines()
    assert len(lines) == len(task.target_train) == 27 * 6 + 6 and "30\t0" in lines  # the target-only user is 30 there
    split = bench.fit_split(task, source_name="books", target_name="films")
    assert len(split.train.domain("films").interactions) == len(task.target_train) and split.valid.n_users == 0
