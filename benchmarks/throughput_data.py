"""The synthetic split that ``train_throughput.py`` trains both libraries on, and how many
crossbench sequences make one batch of about the interactions RecBole batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def held_out(users: np.ndarray) -> np.ndarray:
    """Each user's last 20% of rows (rows sorted by user, then time): rank >= ceil(0.8 * size)."""
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    size = np.diff(np.r_[starts, len(users)])
    rank = np.arange(len(users)) - np.repeat(starts, size)
    return rank >= np.ceil(np.repeat(size, size) * 0.8)


def make_split(n_users: int, seed: int, history_length: int, out: Path, *, sequences: bool, validation: bool = False) -> None:
    """Write the train/test pairs of the synthetic target domain as ``.npz`` and as RecBole atomic files.

    ``synth/`` holds the pairs (for BPR); ``synth_seq/`` holds, per training interaction after a
    user's first, the ``history_length`` items before it (for SASRec), and per test user one
    line with the most recent training items (RecBole needs valid and test files to load);
    ``sequences=False`` skips ``synth_seq/``. With ``validation`` the test items are dropped
    and each user's last 20% of the remaining training items is held out in their place (the
    validation split, where settings are chosen without the test items).
    """
    from crossbench_synthetic import SyntheticDataset

    data = SyntheticDataset(n_users=n_users, seed=seed).load()
    inter = data.domain("movies").interactions.sort_values(["user", "timestamp"], kind="stable")
    users, items = inter["user"].to_numpy(), inter["item"].to_numpy()
    test = held_out(users)
    if validation:
        users, items = users[~test], items[~test]
        test = held_out(users)
    np.savez(out / "split.npz", train_u=users[~test], train_i=items[~test], test_u=users[test], test_i=items[test],
             n_users=data.n_users, n_items=data.domain("movies").n_items)
    atomic = out / "synth"
    atomic.mkdir()
    for part, rows in (("train", ~test), ("valid", test), ("test", test)):
        lines = ["user_id:token\titem_id:token"] + [f"{u}\t{i}" for u, i in zip(users[rows], items[rows])]
        (atomic / f"synth.{part}.inter").write_text("\n".join(lines) + "\n")
    if not sequences:
        return
    seq = out / "synth_seq"
    seq.mkdir()
    header = "user_id:token\titem_id_list:token_seq\titem_id:token"
    train_lines, held_lines = [header], [header]
    train_u, train_i, test_u, test_i = users[~test], items[~test], users[test], items[test]
    starts = np.flatnonzero(np.r_[True, train_u[1:] != train_u[:-1]])
    for s, e in zip(starts, np.r_[starts[1:], len(train_u)]):
        u, hist = train_u[s], train_i[s:e].tolist()
        for j in range(1, len(hist)):
            prefix = " ".join(map(str, hist[max(0, j - history_length) : j]))
            train_lines.append(f"{u}\t{prefix}\t{hist[j]}")
        first_test = np.flatnonzero(test_u == u)[:1]
        if len(first_test):
            held_lines.append(f"{u}\t{' '.join(map(str, hist[-history_length:]))}\t{test_i[first_test[0]]}")
    (seq / "synth_seq.train.inter").write_text("\n".join(train_lines) + "\n")
    for part in ("valid", "test"):
        (seq / f"synth_seq.{part}.inter").write_text("\n".join(held_lines) + "\n")


def sequences_per_batch(users: np.ndarray, history_length: int, batch_size: int, *, by: str) -> int:
    """Sequences (history windows) per batch that hold about ``batch_size`` training interactions.

    ``by="items"``: the windows' mean number of items (the mean user's history, capped at
    ``history_length``); ``by="targets"``: the windows' mean number of ranked targets, the items
    after each window's first, i.e. RecBole's samples: with it both libraries take the same
    number of steps per epoch of about the same number of ranked items each.
    """
    counts = np.bincount(users)
    counts = counts[counts > 0]
    if by == "targets":
        windows = int(np.ceil(counts / history_length).sum())
        per_window = (int(counts.sum()) - windows) / max(windows, 1)
    else:
        per_window = min(counts.sum() / max(len(counts), 1), history_length)
    return max(1, round(batch_size / max(per_window, 1e-9)))
