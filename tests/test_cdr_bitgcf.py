"""BiTGCF (crossbench_cdr.bitgcf): feature propagation and transfer against hand computations, the
transfer reading shared users only, cold users scored from the source side, fitting on the kit's data."""

from __future__ import annotations

import math

import pytest
import torch
from hand_graphs import env, tiny_split

from crossbench.errors import CrossbenchError
from crossbench.testing.data import kit_data, kit_split
from crossbench_cdr.bitgcf import BiTGCF, BiTGCFModule

R2 = math.sqrt(2.0)



def module(**kw) -> BiTGCFModule:
    settings = {"dim": 1, "layers": 1, "dropout": 0.0, **kw}
    m = BiTGCF(**settings).build(tiny_split(), env())
    return m.eval()


def test_the_bridge_is_the_users_of_both_domains():
    m = module()
    assert m.shared.tolist() == [True, False, False]
    assert m.degree_source.tolist() == [1.0, 0.0, 1.0] and m.degree_target.tolist() == [2.0, 1.0, 0.0]


def test_feature_propagation_by_hand():
    """Target ego u0 1, u1 2, u2 0, f0 3, f1 4: Âe = (3/2 + 4/√2, 3/√2, 0, 1/2 + 2/√2, 1/√2);
    e + Âe + e ⊙ Âe: u0 = 1 + 4.328427 + 4.328427, u1 = 2 + 2.121320 + 4.242641, f0 = 3 + 1.914214 + 5.742641,
    f1 = 4 + 0.707107 + 2.828427."""
    m = module()
    e = torch.tensor([[1.0], [2.0], [0.0], [3.0], [4.0]])
    out = m.propagate_layer("target", e).squeeze(1)
    torch.testing.assert_close(out, torch.tensor([9.656854, 8.363961, 0.0, 10.656854, 7.535534]))


def test_feature_transfer_by_hand():
    """u0 (degrees: source 1, target 2), e_s 1, e_t 4, λ = 0.8: common = (1·1 + 2·4) / 3 = 3;
    source = ((0.8·1 + 0.2·4) + 3) / 2 = 2.3, target = ((0.8·4 + 0.2·1) + 3) / 2 = 3.2."""
    m = module(lambda_source=0.8, lambda_target=0.8)
    es = torch.tensor([[1.0], [7.0], [8.0], [9.0]])  # users u0-u2, then item b0
    et = torch.tensor([[4.0], [5.0], [6.0], [10.0], [11.0]])  # users u0-u2, then items f0, f1
    s, t = m.transfer(es, et)
    torch.testing.assert_close(s.squeeze(1), torch.tensor([2.3, 7.0, 8.0, 9.0]))
    torch.testing.assert_close(t.squeeze(1), torch.tensor([3.2, 5.0, 6.0, 10.0, 11.0]))
    m = module(lambda_source=1.0, lambda_target=0.5)  # λ_s = 1: the source keeps its own half
    s, t = m.transfer(es, et)
    assert s[0].item() == pytest.approx((1.0 + 3.0) / 2) and t[0].item() == pytest.approx((2.5 + 3.0) / 2)


def test_the_transfer_reads_only_shared_users():
    """Changing every source embedding moves the shared user's target embedding, and leaves the
    target-only user's target embedding (and every target item's, at one layer) bit-identical."""
    torch.manual_seed(0)
    m = module(dim=4)
    before = m.propagate()["target"]
    with torch.no_grad():
        m.embedding("source", "user").weight.mul_(-3.0).add_(1.0)
        m.embedding("source", "item").weight.add_(2.0)
    m.eval()  # clears the cached embeddings
    after = m.propagate()["target"]
    assert torch.equal(after[0][1], before[0][1]), "u1 (films only) must not read the source domain"
    assert torch.equal(after[1], before[1]), "target items read no source embedding at one layer"
    assert not torch.allclose(after[0][0], before[0][0]), "u0 (shared) reads the source domain"
    # in the other direction: u2 (books only) is untouched by the target domain
    before_s = m.propagate()["source"][0][2].clone()
    with torch.no_grad():
        m.embedding("target", "user").weight.add_(5.0)
    m.eval()
    assert torch.equal(m.propagate()["source"][0][2], before_s)
    # random rows through transfer(): only row 0 (u0) differs from its input
    es, et = torch.randn(4, 3), torch.randn(5, 3)
    s, t = m.transfer(es, et)
    assert torch.equal(s[1:], es[1:]) and torch.equal(t[1:], et[1:]) and not torch.equal(s[0], es[0])


def test_cold_users_are_scored_from_their_source_embedding():
    torch.manual_seed(0)
    m = module(dim=4, layers=2)
    final = m.final()
    (su, _), (tu, ti) = final["source"], final["target"]
    scores = m.scores(torch.tensor([0, 1, 2]))
    torch.testing.assert_close(scores[0], tu[0] @ ti.T)
    torch.testing.assert_close(scores[2], su[2] @ ti.T)  # u2 has no film
    assert scores.shape == (3, 2)
    # concat of the ego and two normalised layers: 3 x dim; mean keeps dim
    assert tu.shape == (3, 12) and module(dim=4, layers=2, combine="mean").final()["target"][0].shape == (3, 4)


def test_fit_on_the_kit_data_is_deterministic():
    split = kit_split(kit_data()).fit_view()
    runs = []
    for _ in range(2):
        model = BiTGCF(dim=8, layers=2, epochs=3, patience=2, batch_size=64, lr=0.01)
        report = model.fit(split, env=env())
        runs.append(model.score(torch.arange(split.train.n_users)))
    assert torch.equal(runs[0], runs[1])
    assert runs[0].shape == (split.train.n_users, split.train.domain(split.target).n_items)
    assert report.valid_metric == "ndcg@10" and 1 <= report.epochs <= 3
    assert model.reads_source_domains() and model.cold_users().startswith("from their source-domain")
    assert report.train_samples == report.epochs * sum(len(split.train.domain(d).interactions) for d in split.train.domain_names)


def test_settings_and_sources_are_checked():
    with pytest.raises(CrossbenchError, match=r"bitgcf: lambda_source must be in \[0, 1\], got 1.5"):
        BiTGCF(lambda_source=1.5)
    with pytest.raises(CrossbenchError, match="bitgcf: unknown combine 'sum'"):
        BiTGCF(combine="sum")
    with pytest.raises(CrossbenchError, match="bitgcf: source unknown domain 'music'"):
        BiTGCF(source="music").build(tiny_split(), env())
    assert BiTGCF(source="books").source_domains(tiny_split()) == ["books"]
