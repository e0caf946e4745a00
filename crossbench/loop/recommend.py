"""Top-K recommendations for named users, ranked exactly as the evaluator ranks.

:func:`recommend` takes a fitted model and the training data it was fitted on and returns
each user's top ``k`` target items (seen items excluded by default) with their scores, ranks,
raw ids and titles; :func:`fit_for` fits a model of an experiment on one of its splits, as
``crossbench run`` does. The ranking is :func:`crossbench.evaluate.lists.top_lists`: the
evaluator's masking, top-K and tie rule.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from crossbench.data.model import CrossDomainData
from crossbench.data.protocols import Split, resolve_targets, train_items
from crossbench.errors import CrossbenchError, closest
from crossbench.evaluate.lists import top_lists
from crossbench.experiment.checks import dataset_params, validate
from crossbench.files import atomic_write, write_text_atomic
from crossbench.plugin.build import make_protocol, make_recommender
from crossbench.plugin.experiment import Experiment, ModelRef
from crossbench.plugin.interfaces import Recommender, RunEnv
from crossbench.plugin.registry import Registry

FORMATS = ("csv", "json", "parquet")
COLUMNS = ("user", "rank", "item", "title", "score")


def load_split(exp: Experiment, registry: Registry, *, target: str | None, seed: int) -> tuple[CrossDomainData, Split]:
    """The experiment's dataset and its protocol's split for ``target`` (default: the experiment's first) and ``seed``."""
    validate(exp, registry)
    data = registry.get("datasets", exp.dataset.name).factory(**dataset_params(exp, registry)).load()
    targets = resolve_targets(data, target if target is not None else (list(exp.protocol.targets) or None))
    split = make_protocol(registry, exp.protocol.name, target=targets[0], seed=seed, **exp.protocol.params).split(data)
    return data, split


def fit_for(
    exp: Experiment, m: ModelRef, split: Split, *, registry: Registry, env: RunEnv, checkpoint: Path | None = None,
) -> Recommender:
    """``m`` fitted on ``split``'s training data as the runner fits it (or loaded from a composed model's ``checkpoint``)."""
    torch.manual_seed(env.seed)
    model = make_recommender(registry, m.name, m.params, where=f"model {m.display!r}")
    if checkpoint is None:
        model.fit(split.fit_view(), env=env)
        return model
    load = getattr(model, "load_checkpoint", None)
    if load is None:
        raise CrossbenchError(f"model {m.display!r} cannot load a checkpoint (only trainer-based composed models write them); leave out --checkpoint")
    load(checkpoint, split.fit_view(), env=env)
    return model


def user_indices(data: CrossDomainData, ids: Sequence[str]) -> np.ndarray:
    """Global indices of raw user ids; an unknown id is an error naming it and the closest known ids."""
    index = pd.Index([str(u) for u in data.user_ids])
    pos = index.get_indexer([str(u) for u in ids])
    for raw, p in zip(ids, pos):
        if p < 0:
            near = closest(str(raw), list(index[: 10000]))
            hint = f"; did you mean {', '.join(map(repr, near))}?" if near else ""
            raise CrossbenchError(f"user {raw!r} is not a user of dataset {data.name!r}{hint}")
    return pos.astype(np.int64)


@dataclass(frozen=True)
class Recommendations:
    """One row per (user, rank): raw user id, 1-based rank, raw item id, item title, score."""

    frame: pd.DataFrame

    def write(self, path: Path, *, fmt: str | None = None) -> str:
        """Write to ``path`` atomically in ``fmt`` (default: from the suffix); return the format used."""
        fmt = fmt or (path.suffix.lstrip(".").lower() or "csv")
        if fmt not in FORMATS:
            raise CrossbenchError(f"unknown output format {fmt!r}; use one of {', '.join(FORMATS)}")
        if fmt == "csv":
            write_text_atomic(path, self.frame.to_csv(index=False))
        elif fmt == "json":
            write_text_atomic(path, json.dumps(self.to_json(), indent=2) + "\n")
        else:
            check_parquet()
            with atomic_write(path) as f:
                self.frame.to_parquet(f, index=False)
        return fmt

    def to_json(self) -> list[dict[str, Any]]:
        """``[{"user": ..., "items": [{"rank", "item", "title", "score"}, ...]}, ...]`` in the users' order."""
        out: list[dict[str, Any]] = []
        for user, part in self.frame.groupby("user", sort=False):
            items = [{"rank": int(r.rank), "item": str(r.item), "title": str(r.title), "score": float(r.score)}
                     for r in part.itertuples(index=False)]
            out.append({"user": str(user), "items": items})
        return out


def check_writable(path: Path) -> None:
    """Refuse, before any work, an output file whose folder cannot be written (nothing is left behind)."""
    from crossbench.files import probe_folder

    try:
        probe_folder(path.parent)
    except OSError as exc:
        raise CrossbenchError(f"--output {str(path)!r}: cannot write there ({exc.strerror or exc}); choose a writable place") from None


def check_parquet() -> None:
    """Parquet needs pyarrow; without it, one line saying so."""
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise CrossbenchError("--format parquet needs pyarrow, which is not installed; `pip install pyarrow`, or use csv or json") from None


def recommend(
    model: Recommender, train: CrossDomainData, target: str, users: np.ndarray, *, k: int = 10,
    exclude_seen: bool = True, device: torch.device | str = "cpu", chunk_size: int = 1024,
) -> Recommendations:
    """Each of ``users``' (global indices) top ``k`` items of ``target``, from ``model`` fitted on ``train``.

    Items the user interacted with in ``train``'s target domain are excluded unless ``exclude_seen``
    is false. Users with fewer than ``k`` rankable items get fewer rows.
    """
    dom = train.domain(target)
    exclude = train_items(train, target) if exclude_seen else None
    lists = top_lists(model.score, np.asarray(users, dtype=np.int64), n_items=dom.n_items, k=k, exclude=exclude,
                      chunk_size=chunk_size, device=device)
    rows, ranks = np.nonzero(lists.items >= 0)
    items = lists.items[rows, ranks]
    frame = pd.DataFrame({
        "user": [str(train.user_ids[u]) for u in lists.users[rows]],
        "rank": ranks + 1,
        "item": dom.items["item_id"].astype(str).to_numpy()[items],
        "title": dom.items["title"].fillna("").astype(str).to_numpy()[items],
        "score": lists.scores[rows, ranks].astype(np.float64),
    }, columns=list(COLUMNS))
    return Recommendations(frame)


def read_users(spec: str) -> list[str]:
    """``--users``: comma-separated raw ids, or ``@PATH`` of a file with one id per line (``#`` comments)."""
    if spec.startswith("@"):
        path = Path(spec[1:])
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise CrossbenchError(f"--users file {str(path)!r} does not exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise CrossbenchError(f"--users file {str(path)!r} cannot be read as UTF-8 text ({exc}); give one user id per line") from None
        ids = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    else:
        ids = [part.strip() for part in spec.split(",")]
    ids = [u for u in ids if u]
    if not ids:
        raise CrossbenchError(f"--users {spec!r} names no user; give ids like u000017,u000042 or @users.txt")
    return ids
