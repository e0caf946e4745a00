"""What every file-based loader shares: raw frames in, preprocessing, a validated dataset out."""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from crossbench.data.io import DataFileError
from crossbench.data.model import CrossDomainData
from crossbench.data.preprocess import Preprocessing, build
from crossbench.plugin.interfaces import Dataset


@dataclass(frozen=True)
class RawData:
    """What a loader read: raw interactions, an item table, the file of each domain."""

    interactions: pd.DataFrame
    items: pd.DataFrame | None
    sources: Mapping[str, str]
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FileDataset(Dataset):
    """A dataset read from local files under ``path``; subclasses implement :meth:`read`."""

    path: str
    domains: tuple[str, ...]
    preprocessing: Preprocessing = Preprocessing()
    #: what to tell the user when ``path`` does not exist (e.g. the command that downloads it)
    missing_hint: str = "pass path=DIR"

    #: registered name, used in messages and as the data's name
    dataset_name = "files"

    @abc.abstractmethod
    def read(self) -> RawData:
        """Read the raw interactions (columns domain, user, item, timestamp, rating) and items."""

    def root(self) -> Path:
        p = Path(self.path).expanduser()
        if not p.exists():
            raise DataFileError(f"dataset {self.dataset_name!r}: path {str(p)!r} does not exist; {self.missing_hint}")
        return p

    def default_target(self) -> str:
        """The natural target domain: the last one listed."""
        return self.domains[-1]

    def load(self) -> CrossDomainData:
        raw = self.read()
        extra = dict(raw.meta)
        domains = tuple(extra.pop("domains", self.domains))
        default = self.default_target() if self.domains else domains[-1]
        meta = {"loader": self.dataset_name, "path": str(Path(self.path).expanduser()), "default_target": default}
        meta.update(extra)
        return build(
            self.dataset_name, raw.interactions, raw.items, domains=domains,
            preprocessing=self.preprocessing, meta=meta, sources=raw.sources,
        )


def frame(domain: str, users: Any, items: Any, timestamps: Any, ratings: Any = None) -> pd.DataFrame:
    """A raw interaction frame of one domain."""
    out = pd.DataFrame({"domain": domain, "user": users, "item": items, "timestamp": timestamps})
    if ratings is not None:
        out["rating"] = ratings
    return out.reset_index(drop=True)


def concat(parts: list[pd.DataFrame]) -> pd.DataFrame:
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["domain", "user", "item", "timestamp"])
