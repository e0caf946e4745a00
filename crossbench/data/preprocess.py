"""Preprocessing raw interactions into a :class:`CrossDomainData`, every step recorded.

A loader reads its files into one long frame of raw interactions (columns ``domain``,
``user``, ``item``, ``timestamp`` and optionally ``rating``) and an optional item table
(``domain``, ``item``, ``title``, ``text``), then calls :func:`build`. The steps, in order:

1. ``min_rating``: keep interactions rated at least ``min_rating`` (explicit -> implicit);
2. ``deduplicate``: one interaction per (domain, user, item), the earliest;
3. ``kcore``: per domain, repeatedly drop users and items with fewer than ``k`` interactions;
4. ``min_overlap``: every domain must share at least ``min_overlap`` users with the others;
5. ``remap_ids``: raw ids -> dense indices (users shared across domains by equal raw id);
6. ``item_text``: item titles and descriptions joined to the item table.

Each step appends a plain dict (name, parameters, rows/users/items before and after) to
``meta["preprocessing"]``.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from crossbench.errors import CrossbenchError

if TYPE_CHECKING:  # loaded by the functions that read data, so that declaring a dataset stays cheap
    import pandas as pd

    from crossbench.data.model import CrossDomainData


@dataclass(frozen=True)
class Preprocessing:
    """The preprocessing a loader applies; every field is an explicit dataset parameter."""

    min_rating: float | None = None
    deduplicate: bool = True
    kcore: int = 0
    min_overlap: int = 1

    def check(self, *, dataset: str) -> None:
        if self.kcore < 0:
            raise CrossbenchError(f"dataset {dataset!r}: kcore must be >= 0, got {self.kcore}")
        if self.min_overlap < 0:
            raise CrossbenchError(f"dataset {dataset!r}: min_overlap must be >= 0, got {self.min_overlap}")


#: The keywords :func:`preprocessing` adds to a dataset factory, one per field of :class:`Preprocessing`.
PREPROCESSING_FIELDS = ("min_rating", "deduplicate", "kcore", "min_overlap")

F = TypeVar("F", bound=Callable[..., Any])


def _as_preprocessing(values: Mapping[str, Any], base: Preprocessing) -> Preprocessing:
    """``base`` with ``values``, converted: ``min_rating`` ``none``/``null``/empty means keep every rating."""
    p = dataclasses.replace(base, **values)
    rating = p.min_rating
    absent = rating is None or str(rating).strip().lower() in ("", "none", "null")
    return Preprocessing(min_rating=None if absent else float(rating), deduplicate=bool(p.deduplicate),  # type: ignore[arg-type]
                         kcore=int(p.kcore), min_overlap=int(p.min_overlap))


def preprocessing(defaults: Preprocessing | None = None) -> Callable[[F], F]:
    """Decorate a dataset factory: it takes every preprocessing setting as a keyword argument.

    The decorated factory declares its own parameters and a keyword ``preprocessing:
    Preprocessing``. The factory it returns has those parameters followed by each field of
    :class:`Preprocessing` (typed, with the defaults of ``defaults``, the field defaults if
    ``None``), and passes the settings it is called with as one ``preprocessing``. Every dataset
    thus offers the same preprocessing keywords, defined once.
    """
    base = defaults if defaults is not None else Preprocessing()
    hints = typing.get_type_hints(Preprocessing)

    def wrap(fn: F) -> F:
        sig = inspect.signature(fn)
        if "preprocessing" not in sig.parameters:
            raise TypeError(f"{fn.__qualname__}: a factory decorated with @preprocessing takes a keyword 'preprocessing'")
        own = [p for name, p in sig.parameters.items() if name != "preprocessing"]
        clash = sorted({p.name for p in own} & set(PREPROCESSING_FIELDS))
        if clash:
            raise TypeError(f"{fn.__qualname__}: {clash} are preprocessing settings; drop them from the factory")
        fields = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=getattr(base, name), annotation=hints[name])
                  for name in PREPROCESSING_FIELDS]

        @functools.wraps(fn)
        def factory(**kwargs: Any) -> Any:
            given = {k: kwargs.pop(k) for k in list(kwargs) if k in PREPROCESSING_FIELDS}
            return fn(**kwargs, preprocessing=_as_preprocessing(given, base))

        factory.__signature__ = sig.replace(parameters=[*own, *fields])  # type: ignore[attr-defined]
        factory.__annotations__ = {**{k: v for k, v in fn.__annotations__.items() if k != "preprocessing"},
                                   **{name: hints[name] for name in PREPROCESSING_FIELDS}}
        return factory  # type: ignore[return-value]

    return wrap


def _counts(frame: pd.DataFrame) -> dict[str, int]:
    if not len(frame):
        return {"rows": 0, "users": 0, "items": 0}
    return {"rows": len(frame), "users": int(frame["_u"].nunique()), "items": int(frame["_i"].nunique())}


def _record(steps: list[dict[str, Any]], name: str, params: Mapping[str, Any], before: pd.DataFrame, after: pd.DataFrame) -> None:
    b, a = _counts(before), _counts(after)
    steps.append(
        {
            "step": name,
            "params": dict(params),
            "rows_before": b["rows"], "rows_after": a["rows"],
            "users_before": b["users"], "users_after": a["users"],
            "items_before": b["items"], "items_after": a["items"],
        }
    )


def _check_domains(frame: pd.DataFrame, domains: Sequence[str], *, dataset: str, step: str, before: Mapping[str, int]) -> None:
    present = frame["domain"].value_counts()
    for d in domains:
        if int(present.get(d, 0)) == 0:
            raise CrossbenchError(
                f"dataset {dataset!r}: domain {d!r} has no interactions left after {step} "
                f"(it had {before.get(d, 0)} before); relax that setting or drop the domain"
            )


def threshold(frame: pd.DataFrame, min_rating: float, *, dataset: str) -> pd.DataFrame:
    """Interactions with ``rating >= min_rating``."""
    if "rating" not in frame.columns or frame["rating"].isna().all():
        raise CrossbenchError(
            f"dataset {dataset!r}: min_rating={min_rating} needs ratings, but the data has none; set min_rating to none"
        )
    return frame[frame["rating"].to_numpy() >= min_rating]


def deduplicate(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (domain, user, item): the earliest (ties: first in file order)."""
    keys = ["_i", "_u"] if "_i" in frame.columns else ["domain", "user", "item"]
    order = frame.sort_values("timestamp", kind="stable")
    return order.drop_duplicates(keys, keep="first").sort_index()


def kcore(frame: pd.DataFrame, k: int) -> pd.DataFrame:
    """Per domain, drop users and items with fewer than ``k`` interactions until none are left."""
    import pandas as pd

    if k <= 1:
        return frame
    ucol, icol = ("_u", "_i") if "_i" in frame.columns else ("user", "item")
    parts = []
    for _, part in frame.groupby("domain", sort=False):
        while len(part):
            ucount = part.groupby(ucol)[ucol].transform("size").to_numpy()
            icount = part.groupby(icol)[icol].transform("size").to_numpy()
            keep = (ucount >= k) & (icount >= k)
            if keep.all():
                break
            part = part[keep]
        parts.append(part)
    return pd.concat(parts).sort_index() if parts else frame


def overlap_counts(frame: pd.DataFrame, domains: Sequence[str]) -> dict[str, int]:
    """For each domain, how many of its users are active in at least one other domain."""
    import pandas as pd

    col = "_u" if "_u" in frame.columns else "user"
    users = {d: pd.unique(frame.loc[frame["domain"] == d, col]) for d in domains}
    out = {}
    for d in domains:
        rest = [users[o] for o in domains if o != d]
        others = pd.unique(pd.concat([pd.Series(r) for r in rest])) if rest else []
        out[d] = int(pd.Series(users[d]).isin(others).sum())
    return out


def check_overlap(frame: pd.DataFrame, domains: Sequence[str], min_overlap: int, *, dataset: str) -> None:
    """Error unless each domain shares ``min_overlap`` users with the other domains."""
    if min_overlap <= 0 or len(domains) < 2:
        return
    counts = overlap_counts(frame, domains)
    for d in domains:
        if counts[d] < min_overlap:
            others = [o for o in domains if o != d]
            raise CrossbenchError(
                f"dataset {dataset!r}: domain {d!r} shares {counts[d]} users with {', '.join(map(repr, others))} "
                f"(min_overlap={min_overlap}); cross-domain transfer needs users active in both; "
                "check that user ids match across the files, or choose other domains"
            )


def build(
    name: str,
    interactions: pd.DataFrame,
    items: pd.DataFrame | None,
    *,
    domains: Sequence[str],
    preprocessing: Preprocessing,
    meta: Mapping[str, Any] | None = None,
    sources: Mapping[str, str] | None = None,
) -> CrossDomainData:
    """Apply the preprocessing steps to raw frames and return the validated data.

    ``domains`` gives the domain order; ``sources`` maps each domain to the file(s) it came
    from, for messages and the record.
    """
    import numpy as np
    import pandas as pd

    from crossbench.data.model import CrossDomainData

    preprocessing.check(dataset=name)
    steps: list[dict[str, Any]] = []
    frame = interactions.reset_index(drop=True)
    frame["user"] = frame["user"].astype(str)
    frame["item"] = frame["item"].astype(str)
    # integer codes make every step fast: users globally, items per (domain, item)
    frame["_u"] = pd.factorize(frame["user"])[0]
    dcode = pd.factorize(frame["domain"])[0].astype(np.int64)
    frame["_i"] = dcode * (int(frame["item"].size) + 1) + pd.factorize(frame["item"])[0]
    read_counts = frame["domain"].value_counts().to_dict()
    for d in domains:
        if int(read_counts.get(d, 0)) == 0:
            where = f" ({sources[d]})" if sources and d in sources else ""
            raise CrossbenchError(f"dataset {name!r}: domain {d!r} has no interactions in its file{where}")
    _record(steps, "read", {"domains": list(domains), "sources": dict(sources or {})}, frame, frame)
    for step, active, fn, params in (
        ("min_rating", preprocessing.min_rating is not None,
         lambda f: threshold(f, float(preprocessing.min_rating or 0), dataset=name), {"min_rating": preprocessing.min_rating}),
        ("deduplicate", preprocessing.deduplicate, deduplicate, {"keep": "earliest"}),
        ("kcore", preprocessing.kcore > 1, lambda f: kcore(f, preprocessing.kcore), {"k": preprocessing.kcore}),
    ):
        if not active:
            continue
        before_counts = frame["domain"].value_counts().to_dict()
        after = fn(frame)
        _check_domains(after, domains, dataset=name, step=f"{step}={next(iter(params.values()))}", before=before_counts)
        _record(steps, step, params, frame, after)
        frame = after
    check_overlap(frame, domains, preprocessing.min_overlap, dataset=name)
    overlap = overlap_counts(frame, domains)
    _record(steps, "min_overlap", {"min_overlap": preprocessing.min_overlap, "overlap": overlap}, frame, frame)
    item_table = None
    if items is not None and len(items):
        item_table = items.copy()
        item_table["item"] = item_table["item"].astype(str)
        item_table = item_table[item_table["domain"].isin(list(domains))]
        # keep only items that still have interactions: the catalogue is what was interacted with
        kept = frame[["domain", "item"]].drop_duplicates()
        item_table = item_table.merge(kept, on=["domain", "item"], how="inner")
    counts = _counts(frame)
    frame = frame.drop(columns=["_u", "_i"])
    data = CrossDomainData.from_frames(name, frame, item_table, domain_order=list(domains))
    steps.append(
        {
            "step": "remap_ids",
            "params": {"users": "shared across domains by equal raw id, sorted", "items": "per domain, sorted raw id"},
            "rows_before": counts["rows"], "rows_after": sum(d.n_interactions for d in data.domains.values()),
            "users_before": counts["users"], "users_after": data.n_users,
            "items_before": counts["items"], "items_after": sum(d.n_items for d in data.domains.values()),
        }
    )
    with_text = {
        d: int(((dom.items["title"].astype(str) != "") | (dom.items["text"].astype(str) != "")).sum())
        for d, dom in data.domains.items()
    }
    steps.append({"step": "item_text", "params": {"items_with_text": with_text, "fields": "title. text"}})
    full_meta = dict(meta or {})
    full_meta["preprocessing"] = steps
    full_meta.setdefault("default_target", list(domains)[-1])
    return CrossDomainData(name=data.name, user_ids=data.user_ids, domains=data.domains, meta=full_meta).validate()


def as_domains(value: Sequence[str] | str, *, dataset: str) -> tuple[str, ...]:
    """Normalize a domain list given as a sequence or a comma-separated string."""
    names = tuple(s.strip() for s in value.split(",")) if isinstance(value, str) else tuple(str(s).strip() for s in value)
    names = tuple(n for n in names if n)
    if not names:
        raise CrossbenchError(f"dataset {dataset!r}: no domains given; pass e.g. --dataset-param domains=A,B")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise CrossbenchError(f"dataset {dataset!r}: domain(s) {dupes} listed twice")
    return names

