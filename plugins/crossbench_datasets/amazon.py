"""Amazon Reviews 2018 and 2023, one category per domain, users matched by reviewer id.

2018 (https://nijianmo.github.io/amazon/): per category ``CATEGORY.csv`` (ratings only: item,
user, rating, timestamp; no header), ``CATEGORY_5.json`` (5-core reviews, one JSON object per
line: ``reviewerID``, ``asin``, ``overall``, ``unixReviewTime``) and ``meta_CATEGORY.json``
(``asin``, ``title``, ``description``). 2023 (https://amazon-reviews-2023.github.io/):
``CATEGORY.jsonl`` (``user_id``, ``parent_asin``, ``rating``, ``timestamp`` in ms) and
``meta_CATEGORY.jsonl`` (``parent_asin``, ``title``, ``description``, ``features``).
Every file may also be gzip-compressed (``.gz``).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from crossbench.data.io import (
    DataFileError,
    find_file,
    join_text,
    read_delimited,
    read_json_lines,
    require_values,
    to_number,
)
from crossbench.errors import CrossbenchError
from crossbench_datasets.base import FileDataset, RawData, concat, frame


def _exists(root: Path, name: str) -> Path | None:
    for suffix in ("", ".gz"):
        if (root / f"{name}{suffix}").is_file():
            return root / f"{name}{suffix}"
    return None


def _meta_items(domain: str, path: Path, *, id_field: str, text_fields: tuple[str, ...], encoding: str) -> pd.DataFrame:
    table = read_json_lines(path, [id_field, "title", *text_fields], required=[id_field], encoding=encoding,
                            what=f"amazon meta of {domain!r}")
    text = table[list(text_fields)].apply(lambda row: " ".join(t for t in map(join_text, row) if t), axis=1)
    return pd.DataFrame(
        {"domain": domain, "item": table[id_field].astype(str), "title": table["title"].map(join_text), "text": text}
    )


@dataclass(frozen=True)
class Amazon2018Dataset(FileDataset):
    """Amazon Reviews 2018 categories as domains (``format``: auto, ratings or 5core)."""

    format: str = "auto"
    meta: bool = True
    encoding: str = "utf-8"

    dataset_name = "amazon2018"

    def _reviews(self, root: Path, d: str) -> Path:
        if self.format not in ("auto", "ratings", "5core"):
            raise CrossbenchError(f"dataset 'amazon2018': format must be auto, ratings or 5core, got {self.format!r}")
        if self.format in ("auto", "5core"):
            found = _exists(root, f"{d}_5.json")
            if found or self.format == "5core":
                return found or find_file(root, [f"{d}_5.json"], what=f"dataset 'amazon2018', domain {d!r}")
        return find_file(root, [f"{d}.csv", f"ratings_{d}.csv"], what=f"dataset 'amazon2018', domain {d!r}")

    def read(self) -> RawData:
        root = self.root()
        parts, items, sources = [], [], {}
        for d in self.domains:
            path = self._reviews(root, d)
            sources[d] = str(path)
            if ".json" in path.name:
                t = read_json_lines(path, ["reviewerID", "asin", "overall", "unixReviewTime"],
                                    required=["reviewerID", "asin", "overall", "unixReviewTime"], encoding=self.encoding,
                                    what=f"amazon2018 reviews of {d!r}")
                rating = to_number(t["overall"], path=path, column="overall")
                ts = to_number(t["unixReviewTime"], path=path, column="unixReviewTime", integer=True)
                parts.append(frame(d, t["reviewerID"].astype(str).to_numpy(), t["asin"].astype(str).to_numpy(), ts, rating))
            else:
                t = read_delimited(path, sep=",", header=False, names=["item", "user", "rating", "timestamp"],
                                   encoding=self.encoding, quoting=csv.QUOTE_MINIMAL, what=f"amazon2018 ratings of {d!r}",
                                   numeric=("rating", "timestamp"))
                if not len(t):
                    raise DataFileError(f"{path}: domain {d!r} has no ratings")
                require_values(t, ["item", "user", "rating", "timestamp"], path=path)
                rating = to_number(t["rating"], path=path, column="rating (3rd field)")
                ts = to_number(t["timestamp"], path=path, column="timestamp (4th field)", integer=True)
                parts.append(frame(d, t["user"].to_numpy(), t["item"].to_numpy(), ts, rating))
            meta_path = _exists(root, f"meta_{d}.json")
            if self.meta and meta_path is not None:
                items.append(_meta_items(d, meta_path, id_field="asin", text_fields=("description",), encoding=self.encoding))
                sources[d] += f" + {meta_path}"
        return RawData(concat(parts), pd.concat(items, ignore_index=True) if items else None, sources)


@dataclass(frozen=True)
class Amazon2023Dataset(FileDataset):
    """Amazon Reviews 2023 categories as domains; items are ``parent_asin`` by default."""

    item_field: str = "parent_asin"
    meta: bool = True
    encoding: str = "utf-8"

    dataset_name = "amazon2023"

    def read(self) -> RawData:
        root = self.root()
        parts, items, sources = [], [], {}
        for d in self.domains:
            path = find_file(root, [f"{d}.jsonl"], what=f"dataset 'amazon2023', domain {d!r}")
            sources[d] = str(path)
            fields = ["user_id", self.item_field, "rating", "timestamp"]
            t = read_json_lines(path, fields, required=fields, encoding=self.encoding, what=f"amazon2023 reviews of {d!r}")
            rating = to_number(t["rating"], path=path, column="rating")
            ms = to_number(t["timestamp"], path=path, column="timestamp", integer=True)
            parts.append(frame(d, t["user_id"].astype(str).to_numpy(), t[self.item_field].astype(str).to_numpy(),
                               np.floor_divide(ms, 1000), rating))
            meta_path = _exists(root, f"meta_{d}.jsonl")
            if self.meta and meta_path is not None:
                items.append(_meta_items(d, meta_path, id_field="parent_asin", text_fields=("description", "features"),
                                         encoding=self.encoding))
                sources[d] += f" + {meta_path}"
        return RawData(concat(parts), pd.concat(items, ignore_index=True) if items else None, sources)
