"""``target_groups``: each window's targets dealt over several batches per epoch. Every position is
trained exactly once an epoch, the batches keep their number per epoch, the groups partition the
all-position loss, and one group keeps the earlier training bit for bit."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from test_sequence_training import TARGET, composed, env, split  # noqa: F401  (split: the shared fixture)

from crossbench.data.protocols import Split
from crossbench.errors import CrossbenchError
from crossbench.train.epoch_data import batch_windows, epoch_batches, epoch_groups, sequence_data
from crossbench.train.sequences import sequence_windows
from crossbench.train.settings import TrainConfig

CPU = torch.device("cpu")


def test_a_batch_of_window_group_pairs_trains_each_windows_group_hand_case() -> None:
    items = torch.tensor([[-1, 5, 6, 7], [1, 2, 3, 4]])
    groups = torch.tensor([[0, 1, 0, 1], [1, 1, 0, 0]])
    seen = {}

    def local(batch: torch.Tensor, work: torch.Tensor) -> torch.Tensor:
        seen["work"] = work.tolist()
        return batch

    # (window 0, group 0), (window 1, group 1), (window 0, group 1), as window * 2 + group
    windows, train = batch_windows(torch.tensor([0, 3, 1]), items, groups, 2, local)
    assert windows.tolist() == [0, 1, 0]
    assert train is not None
    assert train.tolist() == [[False, False, True, False], [True, True, False, False], [False, True, False, True]]
    assert seen["work"] == [1, 2, 2]  # the padding of window 0's group-0 column is no target
    windows, train = batch_windows(torch.tensor([1, 0]), items, None, 1, local)
    assert windows.tolist() == [1, 0] and train is None and seen["work"] == [4, 3]


@pytest.mark.parametrize("k", [2, 3])
def test_an_epoch_trains_every_position_once_in_as_many_batches(split: Split, tmp_path: Path, k: int) -> None:  # noqa: F811
    rec = composed("target-only", target_groups=k, batch_size=4)
    rec._prepare(split, env(tmp_path))
    windows, pools, _ = sequence_data(split.fit_view(), [TARGET], 6, rec.item_counts, CPU)
    gen = torch.Generator().manual_seed(1)
    batches = epoch_batches([TARGET], pools, {}, 4, k, gen, CPU)
    groups = epoch_groups(windows, k, gen, CPU)
    items = windows[TARGET][1]
    assert len(batches) == math.ceil(len(items) / 4)  # the steps of an epoch with one group
    count = torch.zeros_like(items)
    for d, batch in batches:
        assert len(batch) <= 4 * k
        w, train = batch_windows(batch, items, groups[d], k, lambda b, work: b)
        assert train is not None
        count.index_add_(0, w, train.long())
    assert torch.equal(count, (items >= 0).long())
    assert epoch_groups(windows, 1, gen, CPU) == {}


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


def test_grouped_fit_ranks_every_target_once_an_epoch_and_one_group_is_the_default(split: Split, tmp_path: Path) -> None:  # noqa: F811
    one, samples_one = state_of(split, tmp_path)
    again, _ = state_of(split, tmp_path, target_groups=1)
    assert all(torch.equal(one[k], again[k]) for k in one)  # 1 group: the one-pass training, same draws
    two, samples_two = state_of(split, tmp_path, target_groups=2)
    assert samples_two == samples_one  # every target once an epoch, in either layout
    assert any(not torch.equal(one[k], two[k]) for k in one)


def test_target_groups_below_one_is_refused() -> None:
    with pytest.raises(CrossbenchError, match="target_groups must be at least 1, got 0"):
        TrainConfig(target_groups=0).check()
