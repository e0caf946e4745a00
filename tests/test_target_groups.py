"""``target_groups``: each window listed several times an epoch, each listing training a random share
of its targets. Each position is trained once an epoch in expectation, the batches keep their number
per epoch, masks of positions partition the all-position loss, and one group keeps the one-pass
training bit for bit."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from test_sequence_training import TARGET, composed, env, split  # noqa: F401  (split: the shared fixture)

from crossbench.data.protocols import Split
from crossbench.errors import CrossbenchError
from crossbench.train.epoch_data import batch_windows, epoch_batches, sequence_data
from crossbench.train.sequences import sequence_windows
from crossbench.train.settings import TrainConfig

CPU = torch.device("cpu")


def test_a_batch_of_window_listings_trains_a_fresh_share_of_each_window() -> None:
    items = torch.tensor([[-1, 5, 6, 7], [1, 2, 3, 4]])
    seen = {}

    def local(batch: torch.Tensor, work: torch.Tensor) -> torch.Tensor:
        seen["work"] = work.tolist()
        return batch

    windows, train = batch_windows(torch.tensor([1, 0]), items, 1, torch.Generator(), local)
    assert windows.tolist() == [1, 0] and train is None and seen["work"] == [4, 3]
    # listings (window 0, copy 0), (window 1, copy 1), (window 0, copy 1), as window * 2 + copy
    windows, train = batch_windows(torch.tensor([0, 3, 1]), items, 2, torch.Generator().manual_seed(7), local)
    drawn = torch.randint(0, 2, (3, 4), generator=torch.Generator().manual_seed(7)) == 0  # the same draw by hand
    assert windows.tolist() == [0, 1, 0]
    assert train is not None
    assert torch.equal(train, drawn & (items[torch.tensor([0, 1, 0])] >= 0))  # padding is never a target
    assert seen["work"] == train.sum(1).tolist()
    assert not torch.equal(train[0], train[2])  # the two listings of window 0 draw apart (seed 7)


@pytest.mark.parametrize("k", [2, 3])
def test_each_position_is_trained_once_an_epoch_in_expectation_in_as_many_batches(split: Split, tmp_path: Path, k: int) -> None:  # noqa: F811
    rec = composed("target-only", target_groups=k, batch_size=4)
    rec._prepare(split, env(tmp_path))
    windows, pools, _ = sequence_data(split.fit_view(), [TARGET], 6, rec.item_counts, CPU)
    items = windows[TARGET][1]
    gen = torch.Generator().manual_seed(1)
    count, epochs = torch.zeros_like(items), 200
    for _ in range(epochs):
        batches = epoch_batches([TARGET], pools, {}, 4, k, gen, CPU)
        assert len(batches) == math.ceil(len(items) / 4)  # the steps of an epoch with one group
        for _d, batch in batches:
            assert len(batch) <= 4 * k
            w, train = batch_windows(batch, items, k, gen, lambda b, work: b)
            assert train is not None
            count.index_add_(0, w, train.long())
    assert torch.all(count[items < 0] == 0)
    mean = count[items >= 0].double() / epochs  # Binomial(200 k, 1/k) / 200: 1, sd below 0.06
    assert abs(float(mean.mean()) - 1.0) < 0.01 and float(mean.min()) > 0.7 and float(mean.max()) < 1.3


def test_groups_partition_the_all_position_loss(split: Split, tmp_path: Path) -> None:  # noqa: F811
    rec = composed("target-only")
    model = rec._prepare(split, env(tmp_path))
    model.eval()  # no dropout: each group's positions see the same states as in the one pass
    owner, windows = sequence_windows(split.train.domain(TARGET).interactions, 6)
    rows = torch.arange(12)
    log_probs = {d: torch.zeros(split.train.domain(d).n_items) for d in split.train.domain_names}
    gen = torch.Generator().manual_seed(0)
    full, n = rec._sequence_step(model, TARGET, owner[rows], windows[rows], log_probs, gen)
    groups = torch.randint(0, 3, windows[rows].shape, generator=torch.Generator().manual_seed(4))
    parts = [rec._sequence_step(model, TARGET, owner[rows], windows[rows], log_probs, gen, groups == g) for g in range(3)]
    assert all(m > 0 for _, m in parts) and sum(m for _, m in parts) == n
    torch.testing.assert_close(sum(loss * m for loss, m in parts) / n, full, rtol=1e-6, atol=1e-6)


def state_of(split: Split, tmp_path: Path, **kw: object) -> tuple[dict[str, torch.Tensor], int]:  # noqa: F811
    rec = composed("target-only", epochs=2, batch_size=8, **kw)
    report = rec.fit(split.fit_view(), env=env(tmp_path))
    assert rec.model is not None
    return {k: v.clone() for k, v in rec.model.state_dict().items()}, report.train_samples


def test_grouped_fit_ranks_as_many_targets_and_one_group_is_the_one_pass_training(split: Split, tmp_path: Path) -> None:  # noqa: F811
    one, samples_one = state_of(split, tmp_path)
    again, _ = state_of(split, tmp_path, target_groups=1)
    assert all(torch.equal(one[k], again[k]) for k in one)  # 1 group: the one-pass training, same draws
    two, samples_two = state_of(split, tmp_path, target_groups=2)
    assert abs(samples_two / samples_one - 1) < 0.1  # every target once an epoch in expectation
    assert any(not torch.equal(one[k], two[k]) for k in one)


def test_target_groups_below_one_or_with_pair_training_is_refused() -> None:
    with pytest.raises(CrossbenchError, match="target_groups must be at least 1, got 0"):
        TrainConfig(target_groups=0).check()
    with pytest.raises(CrossbenchError, match=r"target_groups=2 needs training='sequences'"):
        TrainConfig(target_groups=2).check()  # pair training, the default
    TrainConfig(target_groups=2, training="sequences").check()
