"""The cross-domain data model.

Users are shared across domains and numbered ``0 .. n_users-1`` globally; items are
numbered ``0 .. n_items-1`` within their domain. Raw ids are kept for output.

``Domain.interactions`` columns: ``user`` (int64), ``item`` (int64), ``timestamp`` (int64)
and optionally ``rating`` (float64). ``Domain.items`` has one row per item, in item order,
with columns ``item_id`` (raw id, str), ``title`` and ``text`` (str, may be empty).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from crossbench.errors import CrossbenchError, unknown_name_message

INTERACTION_COLUMNS = ("user", "item", "timestamp")
ITEM_COLUMNS = ("item_id", "title", "text")


@dataclass(frozen=True)
class Domain:
    """One domain: its interactions and its item table."""

    name: str
    interactions: pd.DataFrame
    items: pd.DataFrame

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def n_interactions(self) -> int:
        return len(self.interactions)

    def users(self) -> np.ndarray:
        """Sorted unique user indices with at least one interaction here."""
        return np.unique(self.interactions["user"].to_numpy())

    def item_texts(self) -> list[str]:
        """``title. text`` per item, in item order."""
        titles = self.items["title"].fillna("").astype(str).tolist()
        texts = self.items["text"].fillna("").astype(str).tolist()
        return [f"{t}. {x}".strip(". ") if x else t for t, x in zip(titles, texts)]


@dataclass(frozen=True)
class CrossDomainData:
    """Several domains over one shared set of users."""

    name: str
    user_ids: np.ndarray
    domains: Mapping[str, Domain]
    meta: Mapping[str, object] = field(default_factory=dict)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def domain_names(self) -> list[str]:
        return list(self.domains)

    def domain(self, name: str) -> Domain:
        """The domain called ``name``; an unknown name suggests the closest."""
        if name not in self.domains:
            raise CrossbenchError(unknown_name_message(f"domain of dataset {self.name!r}:", name, self.domains))
        return self.domains[name]

    def with_domains(self, domains: Mapping[str, Domain]) -> CrossDomainData:
        """A copy with the domains replaced (same users)."""
        return CrossDomainData(name=self.name, user_ids=self.user_ids, domains=dict(domains), meta=self.meta)

    def validate(self) -> CrossDomainData:
        """Check invariants; raise a :class:`CrossbenchError` naming the problem."""
        if len(self.domains) < 1:
            raise CrossbenchError(f"dataset {self.name!r} has no domains")
        for d in self.domains.values():
            where = f"dataset {self.name!r}, domain {d.name!r}"
            missing = [c for c in INTERACTION_COLUMNS if c not in d.interactions.columns]
            if missing:
                raise CrossbenchError(f"{where}: interactions lack column(s) {missing}")
            missing = [c for c in ITEM_COLUMNS if c not in d.items.columns]
            if missing:
                raise CrossbenchError(f"{where}: item table lacks column(s) {missing}")
            if d.n_interactions == 0:
                raise CrossbenchError(f"{where}: the domain has no interactions; drop it or check the filters")
            u = d.interactions["user"].to_numpy()
            i = d.interactions["item"].to_numpy()
            if u.min() < 0 or u.max() >= self.n_users:
                raise CrossbenchError(f"{where}: user index out of range [0, {self.n_users})")
            if i.min() < 0 or i.max() >= d.n_items:
                raise CrossbenchError(f"{where}: item index out of range [0, {d.n_items})")
        return self

    def fingerprint(self) -> str:
        """sha256 over every domain's interactions (user, item, timestamp) and item ids."""
        h = hashlib.sha256()
        h.update(str(self.n_users).encode())
        for name in sorted(self.domains):
            d = self.domains[name]
            h.update(name.encode())
            for col in INTERACTION_COLUMNS:
                h.update(np.ascontiguousarray(d.interactions[col].to_numpy(dtype=np.int64)).tobytes())
            h.update("\x1f".join(map(str, d.items["item_id"])).encode())
        return h.hexdigest()

    def overlap(self, a: str, b: str) -> np.ndarray:
        """Users with interactions in both ``a`` and ``b``."""
        return np.intersect1d(self.domain(a).users(), self.domain(b).users())

    @classmethod
    def from_frames(
        cls,
        name: str,
        interactions: pd.DataFrame,
        items: pd.DataFrame | None = None,
        *,
        domain_order: Sequence[str] | None = None,
        meta: Mapping[str, object] | None = None,
    ) -> CrossDomainData:
        """Build from raw ids.

        ``interactions``: columns ``domain``, ``user``, ``item`` (raw ids, any type),
        ``timestamp`` and optionally ``rating``. ``items`` (optional): columns ``domain``,
        ``item`` and optionally ``title``, ``text``; items that appear only here are kept.
        User ids are shared across domains by equality.
        """
        for col in ("domain", "user", "item", "timestamp"):
            if col not in interactions.columns:
                raise CrossbenchError(f"dataset {name!r}: interactions lack column {col!r}")
        inter = interactions.copy()
        inter["user"] = inter["user"].astype(str)
        inter["item"] = inter["item"].astype(str)
        user_ids = np.array(sorted(inter["user"].unique()), dtype=object)
        user_index = pd.Index(user_ids)
        names = list(domain_order) if domain_order is not None else sorted(inter["domain"].unique())
        domains: dict[str, Domain] = {}
        for dname in names:
            part = inter[inter["domain"] == dname]
            table = None
            if items is not None:
                table = items[items["domain"] == dname].copy()
                table["item"] = table["item"].astype(str)
                table = table.drop_duplicates("item", keep="first")
            ids = set(part["item"].unique())
            if table is not None:
                ids |= set(table["item"])
            item_ids = np.array(sorted(ids), dtype=object)
            item_index = pd.Index(item_ids)
            frame = pd.DataFrame(
                {
                    "user": user_index.get_indexer(part["user"]).astype(np.int64),
                    "item": item_index.get_indexer(part["item"]).astype(np.int64),
                    "timestamp": part["timestamp"].to_numpy(dtype=np.int64),
                }
            )
            if "rating" in part.columns:
                frame["rating"] = part["rating"].to_numpy(dtype=np.float64)
            title = pd.Series([""] * len(item_ids), dtype=object)
            text = pd.Series([""] * len(item_ids), dtype=object)
            if table is not None and len(table):
                pos = item_index.get_indexer(table["item"])
                if "title" in table.columns:
                    title.iloc[pos] = table["title"].fillna("").astype(str).to_numpy()
                if "text" in table.columns:
                    text.iloc[pos] = table["text"].fillna("").astype(str).to_numpy()
            item_frame = pd.DataFrame({"item_id": item_ids, "title": title.to_numpy(), "text": text.to_numpy()})
            frame = frame.sort_values(["user", "timestamp", "item"], kind="stable").reset_index(drop=True)
            domains[str(dname)] = Domain(name=str(dname), interactions=frame, items=item_frame)
        return cls(name=name, user_ids=user_ids, domains=domains, meta=dict(meta or {})).validate()
