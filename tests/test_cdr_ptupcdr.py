"""PTUPCDR (Zhu et al., WSDM 2022) as the cdr plugin trains it: its defining mechanisms."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from crossbench.plugin.interfaces import RunEnv
from crossbench.testing.data import TARGET, kit_data, kit_split
from crossbench.train.stages import run_stage, run_stages
from crossbench_cdr.ptupcdr import MetaNet, Ptupcdr, source_histories
from crossbench_cdr.sources import two_sides

SOURCE = "books"


@pytest.fixture(scope="module")
def split():
    return kit_split(kit_data(n_users=60)).fit_view()


def env(registry) -> RunEnv:
    return RunEnv(registry=registry, seed=0, progress=False)


@pytest.fixture(scope="module")
def fitted(split, registry):
    rec = Ptupcdr(dim=6, meta_dim=8, epochs=2, meta_epochs=2)
    report = rec.fit(split, env=env(registry))
    return rec, report


def test_the_characteristic_encoder_and_bridge_match_a_hand_computation():
    torch.manual_seed(0)
    net = MetaNet(dim=2, meta_dim=3)
    with torch.no_grad():
        net.attention[0].weight.copy_(torch.eye(2))
        net.attention[0].bias.zero_()
        net.attention[2].weight.copy_(torch.tensor([[1.0, 1.0]]))
    items = torch.tensor([[[1.0, 0.0], [0.0, 3.0], [9.0, 9.0]]])  # the third is padding
    mask = torch.tensor([[True, True, False]])
    # logits relu(e).sum(): 1 and 3 -> weights e^1 / (e^1 + e^3), e^3 / (e^1 + e^3)
    w1 = np.exp(1) / (np.exp(1) + np.exp(3))
    characteristic = torch.tensor([[w1 * 1.0, (1 - w1) * 3.0]], dtype=torch.float32)
    expected = net.decoder(characteristic).view(1, 2, 2)
    torch.testing.assert_close(net(items, mask), expected)
    # a user with no source item gets the bridge of a zero characteristic vector
    torch.testing.assert_close(net(items, torch.zeros_like(mask)), net.decoder(torch.zeros(1, 2)).view(1, 2, 2))


def test_the_bridge_differs_per_user_and_depends_only_on_source_history(split, fitted):
    rec, _ = fitted
    model = rec.model
    users = torch.as_tensor(np.flatnonzero(model.has_source.cpu().numpy())[:8])
    with torch.no_grad():
        bridges = model.bridge(users)
        assert bridges.shape == (len(users), 6, 6)
        distinct = {tuple(b.flatten().tolist()) for b in bridges}
        assert len(distinct) == len(users), "every user with another source history has another bridge"
        a, b = int(users[0]), int(users[1])
        saved = model.history[b].clone()
        model.history[b] = model.history[a]
        torch.testing.assert_close(model.bridge(torch.tensor([b])), model.bridge(torch.tensor([a])), rtol=0, atol=0)
        model.history[b] = saved
        # target factors do not enter the bridge; source item factors do
        before = model.bridge(users).clone()
        target = {k: v.clone() for k, v in model.target.state_dict().items()}
        for p in model.target.parameters():
            p.add_(torch.randn_like(p))
        torch.testing.assert_close(model.bridge(users), before, rtol=0, atol=0)
        model.target.load_state_dict(target)
        items = model.source.item.weight.clone()
        model.source.item.weight.add_(0.5)
        assert not torch.equal(model.bridge(users), before)
        model.source.item.weight.copy_(items)


def test_the_history_holds_the_most_recent_source_items(split):
    source, _ = two_sides(split, None, model="ptupcdr")
    hist = source_histories(split, source, length=3, positive_only=False)
    inter = split.train.domain(SOURCE).interactions
    for u in (0, 1, 5):
        rows = inter[inter["user"] == u].sort_values("timestamp")
        expected = rows["item"].tolist()[-3:]
        got = [i for i in hist[u].tolist() if i >= 0]
        assert got == expected
        assert hist[u].tolist()[: 3 - len(expected)] == [-1] * (3 - len(expected))
    rated = source_histories(split, source, length=10, positive_only=True)
    for u in (0, 1, 5):
        rows = inter[(inter["user"] == u) & (inter["rating"] > 3)].sort_values("timestamp")
        assert [i for i in rated[u].tolist() if i >= 0] == rows["item"].tolist()


@pytest.mark.parametrize(("objective", "ranking_loss"), [("ranking", "softmax"), ("ranking", "bpr"), ("rating", "softmax")])
def test_the_meta_stage_trains_only_the_meta_network_on_overlapping_users(split, registry, objective, ranking_loss):
    rec = Ptupcdr(objective=objective, ranking_loss=ranking_loss, dim=4, meta_dim=6, epochs=1, meta_epochs=2)
    e = env(registry)
    torch.manual_seed(0)
    rec.env = e
    model = rec.build(split, e)
    rec.model = model
    stages = list(rec.stages(split, model, e))
    assert [s.name for s in stages] == ["target-factors", "source-factors", "meta"]
    run_stages(model, stages[:2], split=split, env=e, score=rec.score)
    factors = {k: v.clone() for k, v in model.state_dict().items() if k.startswith(("source.", "target."))}
    meta = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("meta.")}
    seen = []
    inner = stages[2].loss

    def spy(m, batch, gen):
        seen.append((batch["user"].clone(), batch["item"].clone()))
        return inner(m, batch, gen)

    report = run_stage(model, type(stages[2])(**{**stages[2].__dict__, "loss": spy}), split=split, env=e, score=rec.score)
    users = torch.cat([u for u, _ in seen]).tolist()
    src = set(split.train.domain(SOURCE).interactions["user"])
    tgt = split.train.domain(TARGET).interactions
    rows = tgt[tgt["user"].isin(src)]
    assert len(users) == report.epochs * len(rows), "each epoch reads every target row of the overlapping users once"
    assert sorted(set(users)) == sorted(set(rows["user"]))
    assert not set(users) & set(split.valid.users.tolist())
    after = model.state_dict()
    for k, v in factors.items():
        assert torch.equal(after[k], v), f"{k} changed in the meta stage"
    assert any(not torch.equal(after[k], v) for k, v in meta.items())


def test_a_cold_user_is_scored_with_the_bridged_source_vector(split, fitted):
    rec, report = fitted
    model = rec.model
    cold = torch.as_tensor(split.valid.users)
    with torch.no_grad():
        bridged = torch.bmm(model.source.user(cold).unsqueeze(1), model.bridge(cold)).squeeze(1)
        torch.testing.assert_close(rec.score(cold), bridged @ model.target.item.weight.T)
    assert report.stages[-1].name == "meta" and report.valid_score == max(report.stages[-1].history)


def test_the_task_loss_matches_a_hand_computation():
    """Softmax task loss: cross-entropy of u W_u . v over the whole target catalogue; BPR: -log sigmoid(s_pos - s_neg)."""
    from crossbench_cdr.ptupcdr import meta_loss

    class Fixed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.target = torch.nn.Module()
            self.target.item = torch.nn.Embedding(3, 2)
            with torch.no_grad():
                self.target.item.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))

        def transfer(self, users):
            return torch.tensor([[2.0, 0.0]]).expand(len(users), 2)

    batch = {"user": torch.tensor([0]), "item": torch.tensor([1])}
    # scores 2, 0, 2: -log(e^0 / (e^2 + e^0 + e^2))
    expected = -np.log(1.0 / (2 * np.exp(2) + 1.0))
    got = meta_loss("ranking", 3, "softmax")(Fixed(), batch, torch.Generator().manual_seed(0))
    assert abs(float(got.detach()) - expected) < 1e-6
    rated = meta_loss("rating", 3)(Fixed(), {**batch, "rating": torch.tensor([4.0])}, torch.Generator())
    assert float(rated.detach()) == 16.0  # (0 - 4)^2
