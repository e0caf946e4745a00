"""The trainer: losses checked by hand, determinism, the no-history fast path, checkpoints, timings."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from crossbench.data.protocols import GroundTruth, Split
from crossbench.errors import CrossbenchError
from crossbench.plugin.interfaces import RunEnv
from crossbench.plugin.manager import get_plugin_manager
from crossbench.plugin.registry import Registry
from crossbench.train import ComposedRecommender
from crossbench.train.settings import TrainConfig
from crossbench_protocols import ColdStart
from crossbench_synthetic import SyntheticDataset

REGISTRY = Registry(get_plugin_manager())


@pytest.fixture(scope="module")
def split() -> Split:
    data = SyntheticDataset(n_users=300, n_items=60, seed=1).load()
    return ColdStart(target="movies", test_fraction=0.3, valid_fraction=0.1, seed=1).split(data)


def env(tmp_path: Path, **kw: object) -> RunEnv:
    return RunEnv(registry=REGISTRY, seed=7, progress=False, cache_dir=tmp_path, **kw)  # type: ignore[arg-type]


def mf(**kw: object) -> ComposedRecommender:
    return ComposedRecommender(item_encoder="id", user_encoder="user-id", fusion="target-only", scorer="dot", config=TrainConfig(dim=8, **kw))  # type: ignore[arg-type]


def test_softmax_loss_matches_hand_computation(split: Split, tmp_path: Path) -> None:
    rec = mf(loss="softmax", sampled_negatives=0, l2=0.0)
    model = rec._prepare(split, env(tmp_path))
    users = torch.tensor([3, 5, 8, 9])
    pos = torch.tensor([4, 4, 7, 1])  # rows 0 and 1 share their positive: not negatives of each other
    loss = rec._softmax_step(model, "movies", users, pos, 60, torch.Generator().manual_seed(0))
    u = model.user_encoders["movies"].embedding.weight[users]
    v = model.item_encoders["movies"].embedding.weight[pos]
    s = u @ v.T
    expected = []
    for r in range(4):
        keep = [c for c in range(4) if c == r or int(pos[c]) != int(pos[r])]
        expected.append(-(s[r, r] - torch.logsumexp(s[r, keep], 0)))
    torch.testing.assert_close(loss, torch.stack(expected).mean())


def test_bpr_loss_matches_hand_computation(split: Split, tmp_path: Path) -> None:
    rec = mf(negatives=3, l2=0.0)
    model = rec._prepare(split, env(tmp_path))
    users, pos = torch.tensor([1, 2]), torch.tensor([5, 6])
    loss = rec._bpr_step(model, "movies", users, pos, 60, torch.Generator().manual_seed(3))
    neg = torch.randint(0, 60, (2, 3), generator=torch.Generator().manual_seed(3))
    u = model.user_encoders["movies"].embedding.weight[users]
    emb = model.item_encoders["movies"].embedding.weight
    diff = (u * emb[pos]).sum(1, keepdim=True) - torch.einsum("bd,bnd->bn", u, emb[neg])
    torch.testing.assert_close(loss, -F.logsigmoid(diff).mean())


def test_unknown_loss_is_refused(split: Split, tmp_path: Path) -> None:
    with pytest.raises(CrossbenchError, match="did you mean 'softmax'"):
        mf(loss="sofmax").fit(split, env=env(tmp_path))


@pytest.mark.parametrize("loss", ["bpr", "softmax"])
def test_fit_is_deterministic_on_cpu_and_reports_timings(split: Split, tmp_path: Path, loss: str) -> None:
    def run() -> tuple[torch.Tensor, object]:
        config = TrainConfig(dim=8, epochs=2, loss=loss, batch_size=256)
        rec = ComposedRecommender(item_encoder="id", user_encoder="gru", fusion="gating", scorer="dot", config=config)
        report = rec.fit(split, env=env(tmp_path))
        return rec.score(torch.as_tensor(split.test.users)), report

    a, report = run()
    b, _ = run()
    assert torch.equal(a, b)
    assert report.threads == torch.get_num_threads()  # type: ignore[attr-defined]
    n_train = sum(split.train.domain(d).n_interactions for d in split.train.domain_names)
    assert report.train_samples == report.epochs * n_train  # type: ignore[attr-defined]
    assert report.samples_per_second > 0  # type: ignore[attr-defined]


def test_user_id_encoders_skip_histories_but_keep_presence(split: Split, tmp_path: Path) -> None:
    """CMF: a user cold in the target is scored by their source-domain vector alone."""
    rec = ComposedRecommender(item_encoder="id", user_encoder="user-id", fusion="shared", scorer="dot", config=TrainConfig(dim=8, epochs=1))
    rec.fit(split, env=env(tmp_path))
    assert rec.model is not None
    cold = torch.as_tensor(split.test.users[:5])
    books = rec.model.user_encoders["books"].embedding.weight[cold]
    items = rec.model.item_encoders["movies"].embedding.weight
    torch.testing.assert_close(rec.score(cold), books @ items.T)
    warm = int(split.train.domain("movies").interactions["user"].iloc[0])
    both = torch.tensor([warm])
    in_books = bool((split.train.domain("books").interactions["user"] == warm).any())
    vecs = [rec.model.user_encoders["movies"].embedding.weight[both]]
    if in_books:
        vecs.append(rec.model.user_encoders["books"].embedding.weight[both])
    torch.testing.assert_close(rec.score(both), torch.stack(vecs).mean(0) @ items.T)


def test_checkpoint_round_trip_and_refusals(split: Split, tmp_path: Path) -> None:
    rec = ComposedRecommender(item_encoder="id", user_encoder="mean", fusion="emcdr-joint", scorer="cosine", config=TrainConfig(dim=8, epochs=2))
    rec.fit(split, env=env(tmp_path, checkpoint_dir=tmp_path / "ckpt"))
    path = tmp_path / "ckpt" / "model.pt"
    assert path.is_file()
    torch.load(path, weights_only=True)  # plain tensors and primitives only
    users = torch.as_tensor(split.test.users)
    again = ComposedRecommender(item_encoder="id", user_encoder="mean", fusion="emcdr-joint", scorer="cosine", config=TrainConfig(dim=8, epochs=2))
    again.load_checkpoint(path, split, env=env(tmp_path))
    assert torch.equal(again.score(users), rec.score(users))
    other = ComposedRecommender(item_encoder="id", user_encoder="mean", fusion="emcdr-joint", scorer="cosine", config=TrainConfig(dim=8, epochs=3))
    with pytest.raises(CrossbenchError, match=r"another configuration \(training settings differ: \['epochs'\]\)"):
        other.load_checkpoint(path, split, env=env(tmp_path))
    with pytest.raises(CrossbenchError, match="does not exist"):
        again.load_checkpoint(tmp_path / "missing.pt", split, env=env(tmp_path))
    evil = tmp_path / "evil.pt"
    torch.save({"format": 1, "describe": "{}", "state": {}, "obj": GroundTruth.from_pairs(users.numpy(), users.numpy())}, evil)
    with pytest.raises(CrossbenchError, match="could not be read safely"):
        again.load_checkpoint(evil, split, env=env(tmp_path))


def test_early_stopping_selects_on_validation_only(split: Split, tmp_path: Path) -> None:
    rec = ComposedRecommender(item_encoder="id", user_encoder="mean", fusion="shared", scorer="dot", config=TrainConfig(dim=8, epochs=6, patience=2))
    report = rec.fit(split, env=env(tmp_path))
    assert report.valid_metric == "ndcg@10"
    assert len(report.history) == report.epochs
    assert report.valid_score == max(report.history)
    assert report.history[report.best_epoch - 1] == report.valid_score
