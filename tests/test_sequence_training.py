"""All-position (causal) training: equal to position-by-position training, item-level attention
that reads only what it may, the popularity fallback of target-only models, the zero-metric stop."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from crossbench.data.protocols import Split
from crossbench.plugin.interfaces import RunEnv
from crossbench.plugin.manager import get_plugin_manager
from crossbench.plugin.registry import Registry
from crossbench.train import ComposedRecommender
from crossbench.train.sequences import sequence_windows
from crossbench.train.settings import TrainConfig
from crossbench_protocols import ColdStart
from crossbench_synthetic import SyntheticDataset

REGISTRY = Registry(get_plugin_manager())
TARGET = "movies"


@pytest.fixture(scope="module")
def split() -> Split:
    data = SyntheticDataset(n_users=200, n_items=40, seed=2).load()
    return ColdStart(target=TARGET, test_fraction=0.3, valid_fraction=0.1, seed=2).split(data)


def env(tmp_path: Path) -> RunEnv:
    return RunEnv(registry=REGISTRY, seed=5, progress=False, cache_dir=tmp_path)


def composed(fusion: str | object, **kw: object) -> ComposedRecommender:
    from crossbench.plugin.specs import ComponentRef

    return ComposedRecommender(
        item_encoder="id", user_encoder=ComponentRef("transformer", {"layers": 2, "heads": 2, "dropout": 0.0}),
        fusion=fusion, scorer="dot",  # type: ignore[arg-type]
        config=TrainConfig(dim=8, l2=0.0, loss="full-softmax", training="sequences", history_length=6, target_history_dropout=0.0, **kw),  # type: ignore[arg-type]
    )


def position_by_position_loss(rec: ComposedRecommender, users: torch.Tensor, windows: torch.Tensor) -> torch.Tensor:
    """The mean softmax loss of every window position, each computed by its own forward pass."""
    model = rec.model
    assert model is not None
    domains = model.domains_for(TARGET)
    catalogue = model.item_encoders[TARGET].all_items()
    losses = []
    for u, window in zip(users.tolist(), windows):
        for j in range(window.shape[0]):
            if window[j] < 0:
                continue
            one = torch.tensor([u])
            hists, masks, present = {}, {}, {}
            for d in domains:
                h = window.unsqueeze(0) if d == TARGET else rec.histories[d][one]
                m = h >= 0
                if d == TARGET:
                    m = m & (torch.arange(h.shape[1]) < j)  # only the window's items before position j
                hists[d], masks[d], present[d] = h, m, m.any(1)
            if not model.fusion.cross_domain and not bool(present[TARGET]):
                continue  # target-only models skip positions with nothing before them
            vec = model.user_vectors(one, hists, masks, TARGET, present)
            losses.append(F.cross_entropy(vec @ catalogue.T, window[j : j + 1]))
    return torch.stack(losses).mean()


def test_windows_cover_every_interaction_once() -> None:
    frame = pd.DataFrame({
        "user": [0, 0, 0, 0, 0, 2, 2, 3], "item": [10, 11, 12, 13, 14, 20, 21, 30], "timestamp": [5, 1, 2, 3, 4, 9, 8, 1],
    })
    owner, windows = sequence_windows(frame, 3)
    # user 0 by time: 11 12 13 14 10 -> windows [13 14 10] and [-1 11 12]; user 2: 21 20; user 3: 30
    assert owner.tolist() == [0, 0, 2, 3]
    assert windows.tolist() == [[13, 14, 10], [-1, 11, 12], [-1, 21, 20], [-1, -1, 30]]


@pytest.mark.parametrize("fusion", ["target-only", "item-attention", "attention", "concat"])
def test_all_position_loss_equals_position_by_position(split: Split, tmp_path: Path, fusion: str) -> None:
    from crossbench.plugin.specs import ComponentRef

    ref = ComponentRef(fusion, {"dropout": 0.0}) if fusion in ("item-attention", "attention", "concat") else fusion
    rec = composed(ref)
    model = rec._prepare(split, env(tmp_path))
    model.eval()  # no dropout anywhere: the two computations must agree
    owner, windows = sequence_windows(split.train.domain(TARGET).interactions, 6)
    rows = torch.tensor([0, 1, 2, 5, 7, 11, len(owner) - 1])
    assert (windows[rows] < 0).any() and (windows[rows] >= 0).all(1).any()  # full and partly padded windows
    gen = torch.Generator().manual_seed(0)
    log_probs = {d: torch.zeros(split.train.domain(d).n_items) for d in split.train.domain_names}
    loss, n = rec._sequence_step(model, TARGET, owner[rows], windows[rows], log_probs, gen)
    expected = position_by_position_loss(rec, owner[rows], windows[rows])
    assert n > 0
    torch.testing.assert_close(loss, expected, rtol=1e-6, atol=1e-6)


def test_item_attention_reads_no_padding_no_absent_domain_no_later_target_item(split: Split, tmp_path: Path) -> None:
    rec = composed("item-attention")
    model = rec._prepare(split, env(tmp_path))
    fusion = model.fusion.eval()
    g = torch.Generator().manual_seed(4)
    b, length, dim = 3, 5, 8
    items = {d: torch.randn(b, length, dim, generator=g) for d in split.train.domain_names}
    masks = {d: torch.ones(b, length, dtype=torch.bool) for d in items}
    masks[TARGET][0, :2] = False  # left padding
    source = next(d for d in items if d != TARGET)
    masks[source][1] = False  # user 1 has no history in the source domain
    queries = torch.randn(b, length, dim, generator=g)
    q_present = torch.ones(b, length, dtype=torch.bool)
    vectors = {d: (queries if d == TARGET else torch.zeros(b, dim)) for d in items}
    present = {d: (q_present if d == TARGET else masks[d].any(1)) for d in items}
    with torch.no_grad():
        base = fusion(vectors, present, TARGET, items=items, item_masks=masks)
        assert base.shape == (b, length, dim)
        moved = {d: v.clone() for d, v in items.items()}
        # (random changes: a constant shift would vanish in the keys' layer norm)
        moved[TARGET][0, :2] += 3 * torch.randn(2, dim, generator=g)  # padding
        moved[source][1] += 3 * torch.randn(length, dim, generator=g)  # an absent domain
        torch.testing.assert_close(fusion(vectors, present, TARGET, items=moved, item_masks=masks), base)
        later = {d: v.clone() for d, v in items.items()}
        later[TARGET][:, 3] += 3 * torch.randn(b, dim, generator=g)  # target item 3 may be read from position 4 on only
        out = fusion(vectors, present, TARGET, items=later, item_masks=masks)
        torch.testing.assert_close(out[:, :4], base[:, :4])
        assert not torch.allclose(out[:, 4], base[:, 4])


def test_target_only_model_serves_cold_users_by_popularity(split: Split, tmp_path: Path) -> None:
    rec = composed("target-only", epochs=1)
    rec.fit(split.fit_view(), env=env(tmp_path))
    assert rec.reads_source_domains() is False
    assert "popularity" in (rec.cold_users() or "")
    cold = torch.as_tensor(split.valid.users[:4])
    assert not bool((rec.counts[TARGET][cold] > 0).any())  # cold-start: no target history
    counts = torch.bincount(
        torch.as_tensor(split.train.domain(TARGET).interactions["item"].to_numpy(copy=True)),
        minlength=split.train.domain(TARGET).n_items,
    ).float()
    scores = rec.score(cold)
    torch.testing.assert_close(scores, counts.expand(len(cold), -1))
    warm = torch.nonzero(rec.counts[TARGET] > 0).squeeze(1)[:3]
    assert not torch.allclose(rec.score(warm)[0], counts)  # users with history keep their model scores


def test_cross_domain_model_declares_transfer(split: Split, tmp_path: Path) -> None:
    rec = composed("item-attention", epochs=1)
    assert rec.reads_source_domains() is None  # not known before the model is built
    rec.fit(split.fit_view(), env=env(tmp_path))
    assert rec.reads_source_domains() is True and rec.cold_users() == "from source-domain history"


def test_zero_validation_metric_after_first_epoch_stops(split: Split, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import crossbench.train.stages_validation as validation  # the trainer validates through it

    monkeypatch.setattr(validation, "evaluate", lambda *a, **k: SimpleNamespace(means={"ndcg@10": 0.0}))
    rec = composed("target-only", epochs=5)
    report = rec.fit(split.fit_view(), env=env(tmp_path))
    assert report.epochs == 1 and report.history == (0.0,)
    assert len(report.warnings) == 1 and "exactly 0 after the first epoch" in report.warnings[0]


def test_sampled_softmax_with_popularity_correction_matches_hand_computation(split: Split, tmp_path: Path) -> None:
    from crossbench.train.sequences import ranking_loss

    g = torch.Generator().manual_seed(0)
    fused, catalogue = torch.randn(4, 8, generator=g), torch.randn(10, 8, generator=g)
    labels = torch.tensor([1, 2, 2, 9])
    log_probs = torch.log(torch.arange(1, 11, dtype=torch.float32) / 55.0)
    cfg = SimpleNamespace(loss="softmax", sampled_negatives=6, negative_sampling="popularity", l2=0.0, negatives=1)
    scorer = REGISTRY.get("scorers", "dot").factory(context=None)
    loss = ranking_loss(fused, labels, catalogue, scorer=scorer, config=cfg, log_probs=log_probs, generator=torch.Generator().manual_seed(3))  # type: ignore[arg-type]
    neg = torch.multinomial(log_probs.exp(), 6, replacement=True, generator=torch.Generator().manual_seed(3))
    expected = []
    for r in range(4):
        logits = [float(fused[r] @ catalogue[labels[r]] - log_probs[labels[r]])]
        logits += [float(fused[r] @ catalogue[i] - log_probs[i]) for i in neg.tolist() if i != int(labels[r])]
        t = torch.tensor(logits)
        expected.append(-(t[0] - torch.logsumexp(t, 0)))
    torch.testing.assert_close(loss, torch.stack(expected).mean())
