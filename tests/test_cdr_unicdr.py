"""UniCDR (crossbench_cdr.unicdr): both aggregators against hand computations (the attention keeps the
authors' padding in its denominator), the two views and the scores by hand, a cold user scored
through the shared view alone, each domain's loss against its formula, static samples whose
negatives are never the user's items and whose contexts drop the positive and mask the own
domain from the shared view, fitting on the kit's data."""

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
from torch import nn

from crossbench.errors import CrossbenchError
from crossbench.testing.data import kit_data, kit_split
from crossbench_cdr.bilinear import BLOCK_FLOATS, bilinear
from crossbench_cdr.unicdr import Aggregator, UniCDR, UniCDRModule, _UniLoss, critic_loss
from crossbench_cdr.unicdr_samples import eval_contexts, static_samples

# tiny_split: target films (u0-f0, u0-f1, u1-f0), source books (u0-b0, u2-b0); u2 is cold in films.
# Domain 0 is films, domain 1 books; item i of a domain is row i + 1 of its table (row 0 pads).


def test_mean_aggregator_by_hand():
    agg = Aggregator(2, "mean", lambda_a=0.5, dropout=0.0)
    with torch.no_grad():
        agg.w_agg.weight.copy_(torch.eye(2))
    seq = torch.tensor([[[2.0, 0.0], [4.0, 2.0], [0.0, 0.0]]])
    out = agg(torch.tensor([[1.0, 2.0]]), seq, torch.tensor([[True, True, False]]))
    # mean of the two real items (3, 1); 0.5 * (1, 2) + 0.5 * (3, 1)
    torch.testing.assert_close(out, torch.tensor([[2.0, 1.5]]))


def test_attention_aggregator_counts_padding_in_its_denominator_as_the_authors_code():
    agg = Aggregator(2, "user_attention", lambda_a=0.0, dropout=0.0).eval()
    with torch.no_grad():
        agg.w_agg.weight.copy_(torch.eye(2))
        agg.w_att[0].weight.copy_(torch.eye(2))
        agg.w_att[0].bias.zero_()
    seq = torch.tensor([[[0.5, 0.0], [1.0, 0.0], [0.0, 0.0]]])
    out = agg(torch.tensor([[1.0, 0.0]]), seq, torch.tensor([[True, True, False]]))
    # logits tanh(0.5) and tanh(1); the padded slot adds exp(0) = 1 to the denominator only
    e0, e1 = math.exp(math.tanh(0.5)), math.exp(math.tanh(1.0))
    expected = (e0 * 0.5 + e1 * 1.0) / (e0 + e1 + 1.0)
    torch.testing.assert_close(out, torch.tensor([[expected, 0.0]]))


def hand_model() -> tuple[UniCDR, UniCDRModule]:
    model = UniCDR(dim=2, dropout=0.0, eval_history=4)
    m = model.build(tiny_split(), env()).eval()
    with torch.no_grad():
        for agg in [*m.aggregators, m.shared_aggregator]:
            agg.w_agg.weight.copy_(torch.eye(2))
        m.shared_users.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 2.0]]))
        m.users[0].weight.copy_(torch.tensor([[1.0, 1.0], [3.0, 3.0], [50.0, -50.0]]))
        m.items[0].weight[1:] = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # f0, f1
        m.items[1].weight[1:] = torch.tensor([[2.0, -2.0]])  # b0
    return model, m


def test_scores_by_hand():
    model, m = hand_model()
    assert model.target_index == 0 and m.has.tolist() == [[True, True], [True, False], [False, True]]
    with torch.no_grad():
        scores = model.score_users(m, torch.tensor([0, 2]))
    # u0 specific: 0.5 (1, 1) + 0.5 mean(f0, f1) = (0.75, 0.75); shared reads f0, f1 and b0 (every domain,
    # the target's too, when scoring): 0.5 (1, 0) + 0.5 (1, -1/3) = (1, -1/6); user (1.75, 7/12)
    # u2 (cold in films): shared only, 0.5 (2, 2) + 0.5 b0 = (2, 0)
    torch.testing.assert_close(scores, torch.tensor([[1.75, 7 / 12], [2.0, 0.0]]))


def test_a_cold_user_is_scored_through_the_shared_view_and_their_source_items():
    model, m = hand_model()
    with torch.no_grad():
        m.users[0].weight[2] = torch.tensor([-7.0, 9.0])  # u2's untrained films row: no effect
        torch.testing.assert_close(model.score_users(m, torch.tensor([2])), torch.tensor([[2.0, 0.0]]))
        m.items[1].weight[1] = torch.tensor([4.0, 2.0])  # their source item moves: shared 0.5 (2, 2) + 0.5 (4, 2)
        torch.testing.assert_close(model.score_users(m, torch.tensor([2])), torch.tensor([[3.0, 2.0]]))
        m.shared_users.weight[2] = torch.tensor([0.0, 0.0])  # and so does their shared embedding
        torch.testing.assert_close(model.score_users(m, torch.tensor([2])), torch.tensor([[2.0, 1.0]]))


@pytest.mark.parametrize("aggregator", ["mean", "user_attention"])
def test_the_shared_views_stacked_lookup_is_the_concatenation_of_the_domains_lookups_bit_for_bit(aggregator: str):
    torch.manual_seed(0)
    m = UniCDRModule(torch.ones(4, 3, dtype=torch.bool), [5, 3, 4], 8, aggregator, 0.5, 0.0).train()
    users = torch.tensor([0, 1, 2, 3])
    others = [torch.randint(0, n + 1, (4, 3)) for n in (5, 3, 4)]
    others[1][2] = 0  # a user without items in the second domain
    g = torch.randn(4, 8)
    _, shared = m.views(0, users, torch.zeros(4, 3, dtype=torch.long), others)
    (shared * g).sum().backward()
    got = [shared.detach(), *(t.weight.grad.clone() for t in m.items), m.shared_users.weight.grad.clone()]
    m.zero_grad()
    seq = torch.cat([m.items[k](ctx) for k, ctx in enumerate(others)], 1)  # the per-domain lookups, concatenated
    mask = torch.cat([ctx > 0 for ctx in others], 1)
    want = m.shared_aggregator(m.shared_users(users), seq * mask[..., None], mask)
    (want * g).sum().backward()
    for a, b in zip(got, [want.detach(), *(t.weight.grad for t in m.items), m.shared_users.weight.grad]):
        assert torch.equal(a, b)
    assert all(t.weight[0].abs().sum() == 0 and t.weight.grad[0].abs().sum() == 0 for t in m.items)  # padding rows


def test_the_shared_view_masks_the_own_domain_in_training_samples():
    split = tiny_split()
    model = UniCDR(dim=2, negatives=3, history_length=4, mask_rate=0.0)
    model.build(split, env())
    films = static_samples(model.domains, 0, np.random.default_rng(0), negatives=3, length=4, mask_rate=0.0,
                           device=torch.device("cpu"))
    assert films["user"].tolist() == [0, 0, 1] and films["item"].tolist() == [1, 2, 1]
    # own context: the user's other films (the positive removed); u1 has only the positive
    assert films["context"].tolist() == [[2, 0, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]]
    assert films["others"][0].abs().sum() == 0  # the films slot of the shared view: all padding
    assert films["others"][1].tolist() == [[1, 0, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]]  # u0's book b0; u1 has none
    # negatives: u0 took both films (uniform over all); u1 took f0, so only f1 (row 2)
    assert (films["negatives"][2] == 2).all() and set(films["negatives"][:2].flatten().tolist()) <= {1, 2}


def test_static_samples_on_the_kit_data_never_draw_a_positive():
    split = kit_split(kit_data()).fit_view()
    model = UniCDR(dim=2)
    model.build(split, env())
    rng = np.random.default_rng(5)
    for d, dom in enumerate(model.domains):
        s = static_samples(model.domains, d, rng, negatives=20, length=10, mask_rate=0.1, device=torch.device("cpu"))
        for k, u in enumerate(s["user"].tolist()):
            mine = set((dom.items_of(u) + 1).tolist())
            assert not mine & set(s["negatives"][k].tolist())
            ctx = [i for i in s["context"][k].tolist() if i]
            assert set(ctx) <= mine and int(s["item"][k]) not in ctx and len(set(ctx)) == len(ctx)
            n = len(mine)
            assert len(ctx) in (int(0.9 * n), int(0.9 * n) - 1)  # 90% of the user's items, less the positive if drawn
            for o, other in enumerate(model.domains):
                got = [i for i in s["others"][o][k].tolist() if i]
                want = 0 if o == d else min(10, int(0.9 * len(other.items_of(u))))
                assert len(got) == want and set(got) <= set((other.items_of(u) + 1).tolist())


def test_eval_contexts_read_every_domain_and_repeat_per_user():
    split = kit_split(kit_data()).fit_view()
    model = UniCDR(dim=2)
    model.build(split, env())
    a = eval_contexts(model.domains, np.array([3, 5]), length=3, seed=1)
    b = eval_contexts(model.domains, np.array([5]), length=3, seed=1)
    assert all(torch.equal(x[1:], y) for x, y in zip(a, b))  # a user's sample does not depend on the batch
    for k, dom in enumerate(model.domains):
        got = [i for i in a[k][1].tolist() if i]
        assert len(got) == min(3, len(dom.items_of(5))) and set(got) <= set((dom.items_of(5) + 1).tolist())


def test_each_domains_loss_is_the_weighted_log_loss_plus_the_critic():
    model, m = hand_model()
    s = static_samples(model.domains, 0, np.random.default_rng(0), negatives=2, length=4, mask_rate=0.0,
                       device=torch.device("cpu"))
    empty = {k: v[:0] if k != "others" else [o[:0] for o in v] for k, v in s.items()}
    loss = _UniLoss([s, empty], lambda_loss=0.25)
    rows = torch.tensor([0, 1, 2])
    value = loss(m, {"row": rows}, torch.Generator().manual_seed(7))
    specific, shared = m.views(0, s["user"], s["context"], s["others"])
    u = specific + shared
    pos = (u * m.items[0](s["item"])).sum(-1)
    neg = (u[:, None] * m.items[0](s["negatives"])).sum(-1)
    rec = F.softplus(-pos).mean() + F.softplus(neg).mean()
    gen = torch.Generator().manual_seed(7)
    shift = int(torch.randint(1, 3, (1,), generator=gen))
    other = (torch.arange(3) + shift) % 3
    crit = m.critics[0]
    critic = F.softplus(-crit(specific, shared)).mean() + F.softplus(crit(specific[other], shared)).mean()
    assert value.item() == pytest.approx((0.25 * rec + 0.75 * critic).item(), rel=1e-6)
    assert critic_loss(crit, specific[:1], shared[:1], gen).item() == 0.0  # one row: no other user to contrast


@pytest.mark.parametrize("rows", [1, 64, 150])
def test_the_row_blocked_bilinear_gives_torchs_scores_and_gradients_bit_for_bit(rows: int):
    torch.manual_seed(3)
    layer = nn.Bilinear(64, 64, 1)  # blocks of BLOCK_FLOATS // (64 * 64) = 64 rows: 150 rows make three blocks
    assert BLOCK_FLOATS // 64**2 == 64
    x1, x2, g = torch.randn(rows, 64), torch.randn(rows, 64), torch.randn(rows, 1)
    grads = []
    for fn in (layer, lambda a, b: bilinear(layer, a, b)):
        layer.zero_grad(set_to_none=True)
        a, b = x1.clone().requires_grad_(), x2.clone().requires_grad_()
        out = fn(a, b)
        out.backward(g)
        grads.append([out.detach(), a.grad, b.grad, layer.weight.grad, layer.bias.grad])
    for want, got in zip(*grads):
        assert torch.equal(want, got)
    # the first input's gradient by hand: sum_j g_b W_ij x2_bj
    torch.testing.assert_close(grads[1][1], (g[:, :, None, None] * layer.weight.detach() * x2[:, None, None, :]).sum((1, 3)))


def test_fit_on_the_kit_data_is_deterministic():
    split = kit_split(kit_data()).fit_view()
    runs = []
    for _ in range(2):
        model = UniCDR(dim=8, epochs=2, patience=2, steps=4, batch_size=16)
        report = model.fit(split, env=env())
        runs.append(model.score(torch.arange(split.train.n_users)))
    assert torch.equal(runs[0], runs[1])
    assert runs[0].shape == (split.train.n_users, split.train.domain(split.target).n_items)
    assert report.valid_metric == "ndcg@10" and 1 <= report.epochs <= 2 and report.train_samples == report.epochs * 4 * 16
    assert model.reads_source_domains() and model.cold_users().startswith("from source-domain history")


def test_settings_are_checked():
    with pytest.raises(CrossbenchError, match="'unicdr': aggregator unknown aggregator 'item_similarity'"):
        UniCDR(aggregator="item_similarity")
    with pytest.raises(CrossbenchError, match=r"'unicdr': lambda_a and lambda_loss must be in \[0, 1\]"):
        UniCDR(lambda_loss=1.5)
    with pytest.raises(CrossbenchError, match="must be >= 1"):
        UniCDR(steps=0)
    assert UniCDR().settings()["dim"] == 128 and UniCDR().settings()["negatives"] == 10


# --------------------------------------------------------------------------- the fidelity benchmark's side

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

from fidelity_unicdr import (  # noqa: E402
    dual_task,
    parse_log,
    sampled_candidates,
    sampled_metrics,
    write_unicdr,
)


def tiny_frames() -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(0)
    rows = {d: [(u, int(i)) for u in range(12) if not (u == 11 and d == "a") for i in rng.choice(30, 2 + u % 5, replace=False)]
            for d in ("a", "b")}
    return {d: pd.DataFrame(r, columns=["user", "item"]) for d, r in rows.items()}


def test_dual_task_holds_out_one_item_per_shared_user_with_three(tmp_path: Path):
    frames = tiny_frames()
    task = dual_task(frames, {"a": 30, "b": 30}, n_users=12, seed=3)
    for d, (train, test) in enumerate(zip(task.train, task.test)):
        counts = frames[task.names[d]].groupby("user").size()
        eligible = {u for u, n in counts.items() if n >= 3 and u != 11}  # user 11 is in b only
        assert set(test["user"]) <= eligible and test["user"].is_unique
        assert set(test["item"]) <= set(train["item"]) and len(train) + len(test) <= len(frames[task.names[d]])
    write_unicdr(task, tmp_path)
    lines = (tmp_path / "datasets/dual-user-intra/dataset/b_a/test.txt").read_text().splitlines()
    assert lines == [f"{u}\t{i}" for u, i in zip(task.test[1]["user"], task.test[1]["item"])]


def test_parse_log_reads_the_test_metrics_after_each_improvement():
    log = ("-------------------b_a--------------------\n{'NDCG_10': np.float64(0.1), 'HT_10': 0.2}\nb_a  better results!\n"
           "+++\n{'NDCG_10': np.float64(0.25), 'HT_10': 0.5}\na_b  better results!\n{'NDCG_10': 0.9, 'HT_10': 0.9}\n")
    assert parse_log(log, "b_a") == [{"NDCG_10": 0.25, "HT_10": 0.5}]


def test_sampled_candidates_and_metrics_by_hand():
    train = pd.DataFrame({"user": [0, 0, 1, 1], "item": [0, 1, 2, 3]})
    test = pd.DataFrame({"user": [0, 1], "item": [2, 0]})
    cand = sampled_candidates(train, test, negatives=1, rng=np.random.default_rng(0))
    # user 0 trained on 0 and 1 and tests 2: only 3 is left; user 1 trained on 2 and 3 and tests 0: only 1
    assert cand.tolist() == [[2, 3], [0, 1]]
    with pytest.raises(ValueError):  # two distinct negatives do not exist (the reference would loop forever)
        sampled_candidates(train, test, negatives=2, rng=np.random.default_rng(0))
    scores = np.array([[0.0, 0.0, 0.0], [0.5, 0.9, 0.0]])
    candidates = np.array([[2] + [0] * 10, [0, 1] + [2] * 9])
    # user 0: no negative above the positive -> rank 0; user 1: item 1 above item 0 -> rank 1
    m = sampled_metrics(scores, np.array([0, 1]), candidates)
    assert m["hit@10"] == 1.0 and m["ndcg@10"] == pytest.approx((1.0 + 1 / math.log2(3)) / 2)
