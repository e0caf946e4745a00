"""The data both sides of the fidelity benchmark see: one split per seed, written in each reference's format.

Two tasks, each built once per seed and handed unchanged to the reference and to crossbench:

* :class:`RatingTask` — the PTUPCDR authors' cold-start rating protocol: a source and a target
  domain with every rating (1-5); a seeded fraction of the users active in both domains are test
  users whose target ratings are all held out; the rest of the target ratings train. MAE/RMSE on
  the test users' target ratings. :func:`write_ptupcdr` writes it as that repository's
  ``config.json`` and ``data/ready/_8_2/tgt_T_src_S/{train_src,train_tgt,train_meta,test}.csv``.
* :class:`RankingTask` — RecBole's default protocol on one domain: implicit interactions, each
  user's interactions shuffled and split 8:1:1 into train / valid / test (RecBole's ``RS`` split
  grouped by user), full ranking. :func:`write_recbole` writes it as atomic files
  ``NAME.train.inter``, ``NAME.valid.inter``, ``NAME.test.inter`` read through RecBole's
  ``benchmark_filename``, so RecBole uses exactly this split instead of drawing its own.

:func:`movielens_domains` reads the development data (crossbench's ``movielens-100k`` dataset,
the same genre assignment, every rating kept); tests pass their own small frames instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

#: the folder the PTUPCDR scripts read for their default ratio [0.8, 0.2] (their ``--ratio`` flag
#: only works at its default), so the test fraction below is that default too
PTUPCDR_TEST_FRACTION = 0.2
PTUPCDR_READY = "ready/_8_2"
#: the batch sizes of the authors' task 1 (their smallest, Movies -> CDs), used for every run here
PTUPCDR_BATCHES = {"batchsize_src": 256, "batchsize_tgt": 256, "batchsize_meta": 128, "batchsize_map": 64, "batchsize_test": 128}


@dataclass(frozen=True)
class RatingTask:
    """A cold-start rating split. Frames have columns ``user``, ``item``, ``rating`` (and ``timestamp``).

    Users are numbered ``0 .. n_users-1`` in both domains; items ``0 .. n_items-1`` per domain.
    """

    source: pd.DataFrame
    target_train: pd.DataFrame
    test: pd.DataFrame
    test_users: np.ndarray
    n_users: int
    n_source_items: int
    n_target_items: int
    seed: int

    def overlap_train_users(self) -> np.ndarray:
        """Users with source data and training target data: the ones a mapping or meta network learns on."""
        both = np.intersect1d(self.source["user"].unique(), self.target_train["user"].unique())
        return np.sort(both)


@dataclass(frozen=True)
class RankingTask:
    """One domain's implicit interactions split per user into train / valid / test (columns ``user``, ``item``)."""

    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    n_users: int
    n_items: int
    seed: int


def movielens_domains(source: str = "comedy", target: str = "drama") -> tuple[pd.DataFrame, pd.DataFrame, int, int, int]:
    """``(source, target, n_users, n_source_items, n_target_items)`` from crossbench's movielens-100k.

    The dataset's default three genre groups decide each movie's domain (exactly as the
    development benchmark does); every rating is kept (``min_rating=None``). Needs the prepared
    data (``CROSSBENCH_CACHE`` pointing at the cache that ``crossbench data prepare`` filled).
    """
    from crossbench_datasets import movielens_100k

    data = movielens_100k(min_rating=None).load()
    src, tgt = data.domain(source), data.domain(target)
    cols = ["user", "item", "rating", "timestamp"]
    return src.interactions[cols].copy(), tgt.interactions[cols].copy(), data.n_users, src.n_items, tgt.n_items


def rating_task(
    source: pd.DataFrame, target: pd.DataFrame, *, n_users: int, n_source_items: int, n_target_items: int,
    seed: int, test_fraction: float = PTUPCDR_TEST_FRACTION,
) -> RatingTask:
    """Draw ``round(test_fraction * |overlap|)`` test users among the users active in both domains."""
    overlap = np.intersect1d(source["user"].unique(), target["user"].unique())
    rng = np.random.default_rng(seed)
    test_users = np.sort(rng.choice(overlap, size=round(test_fraction * len(overlap)), replace=False))
    held = target["user"].isin(test_users).to_numpy()
    order = ["user", "timestamp", "item"]
    return RatingTask(
        source=source.sort_values(order, kind="stable").reset_index(drop=True),
        target_train=target[~held].sort_values(order, kind="stable").reset_index(drop=True),
        test=target[held].sort_values(order, kind="stable").reset_index(drop=True),
        test_users=test_users, n_users=n_users, n_source_items=n_source_items, n_target_items=n_target_items, seed=seed,
    )


def split_counts(total: int, ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> list[int]:
    """How many of a user's ``total`` interactions go to train, valid and test (RecBole 1.2.1's rule).

    Each later part gets ``int(ratio * total)``, at least one when its share is between 0 and 1
    and the first part keeps more than one; the first part gets the rest.
    """
    counts = [int(r * total) for r in ratios]
    counts[0] = total - sum(counts[1:])
    for i in range(1, len(ratios)):
        if counts[0] <= 1:
            break
        if 0 < ratios[-i] * total < 1:
            counts[-i] += 1
            counts[0] -= 1
    return counts


def ranking_task(interactions: pd.DataFrame, *, n_users: int, seed: int, min_rating: float | None = 4.0) -> RankingTask:
    """Keep ratings ``>= min_rating`` as interactions, shuffle each user's and split them 8:1:1.

    Items are renumbered ``0 .. n-1`` over the items that remain (RecBole knows no others).
    """
    frame = interactions if min_rating is None else interactions[interactions["rating"] >= min_rating]
    frame = frame[["user", "item"]].drop_duplicates().sort_values(["user", "item"]).reset_index(drop=True)
    # RecBole's catalogue is the items of its files: number those (in item order) 0 .. n-1 here too
    kept = np.unique(frame["item"].to_numpy())
    frame["item"] = np.searchsorted(kept, frame["item"].to_numpy())
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[], [], []]
    for _, rows in frame.groupby("user", sort=True).indices.items():
        rows = rng.permutation(rows)
        cut = np.cumsum(split_counts(len(rows)))
        for k, piece in enumerate(np.split(rows, cut[:-1])):
            parts[k].append(piece)
    train, valid, test = (frame.iloc[np.sort(np.concatenate(p))].reset_index(drop=True) for p in parts)
    return RankingTask(train=train, valid=valid, test=test, n_users=n_users, n_items=len(kept), seed=seed)


# --------------------------------------------------------------------------- PTUPCDR's format


def source_histories(task: RatingTask) -> dict[int, list[int]]:
    """Each overlapping user's source items rated above 3, in file order, as the reference numbers them."""
    liked = task.source[task.source["rating"] > 3]
    users = set(task.source["user"].unique()) & (set(task.target_train["user"].unique()) | set(task.test_users))
    grouped = liked.groupby("user", sort=False)["item"].apply(list).to_dict()
    return {int(u): [int(i) for i in grouped.get(u, [])] for u in users}


def write_ptupcdr(task: RatingTask, folder: Path, *, source_name: str, target_name: str) -> Path:
    """Write ``task`` where ``entry.py`` (run with ``folder`` as working directory) reads it; return the data folder.

    Item ids: source items keep ``0 .. S-1``, target items become ``S .. S+T-1`` (the reference's
    own numbering); ratings are written as integers, as the reference reads them.
    """
    folder = Path(folder)
    out = folder / "data" / PTUPCDR_READY / f"tgt_{target_name}_src_{source_name}"
    out.mkdir(parents=True, exist_ok=True)
    shift = task.n_source_items
    hist = source_histories(task)

    def rows(frame: pd.DataFrame, *, offset: int, history: bool) -> pd.DataFrame:
        out_frame = pd.DataFrame({
            "uid": frame["user"].astype(int), "iid": frame["item"].astype(int) + offset, "y": frame["rating"].astype(int),
        })
        if history:
            out_frame["pos_seq"] = [str(hist[int(u)]) for u in frame["user"]]
        return out_frame

    overlap = task.overlap_train_users()
    meta = task.target_train[task.target_train["user"].isin(overlap)]
    tables = {
        "train_src": rows(task.source, offset=0, history=False),
        "train_tgt": rows(task.target_train, offset=shift, history=False),
        "train_meta": rows(meta, offset=shift, history=True),
        "test": rows(task.test, offset=shift, history=True),
    }
    for name, table in tables.items():
        table.to_csv(out / f"{name}.csv", header=False, index=False)
    pair = {"src": source_name, "tgt": target_name, "uid": task.n_users, "iid": task.n_source_items + task.n_target_items}
    config = {
        "use_cuda": 0, "root": "./data/", "src_tgt_pairs": {"1": {**pair, **PTUPCDR_BATCHES}},
        "emb_dim": 10, "meta_dim": 50, "num_fields": 2, "wd": 0,
    }
    (folder / "config.json").write_text(json.dumps(config, indent=1))
    return out


# --------------------------------------------------------------------------- RecBole's atomic files


def write_recbole(task: RankingTask, folder: Path, *, name: str) -> Path:
    """Write ``folder/name/name.{train,valid,test}.inter`` (user and item tokens are the indices)."""
    out = Path(folder) / name
    out.mkdir(parents=True, exist_ok=True)
    for part, frame in (("train", task.train), ("valid", task.valid), ("test", task.test)):
        with open(out / f"{name}.{part}.inter", "w") as fh:
            fh.write("user_id:token\titem_id:token\n")
            for u, i in zip(frame["user"].to_numpy(), frame["item"].to_numpy()):
                fh.write(f"{int(u)}\t{int(i)}\n")
    return out
