"""Any CSV or Parquet table of interactions, with a column mapping, and an optional item table.

The interactions file has one row per interaction with a user, an item and a domain column
(names set by ``user_col``, ``item_col``, ``domain_col``) and optionally a time and a rating
column. The item table (``items_path``) has a domain column, an item id column, and text
columns joined into the item's title and description. Parquet needs ``pyarrow``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from crossbench.data.io import DataFileError, read_delimited, require_columns, require_file, require_values, to_number, to_seconds
from crossbench.errors import closest
from crossbench_datasets.base import FileDataset, RawData, frame


def read_table(path: Path, *, sep: str, encoding: str, what: str) -> pd.DataFrame:
    """A CSV (any separator) or Parquet file as strings indexed by line number (row number for Parquet)."""
    require_file(path, what=what)
    if path.suffix.lower() in (".parquet", ".pq"):
        try:
            table = pd.read_parquet(path)
        except ImportError as exc:
            raise DataFileError(
                f"{path}: reading Parquet needs pyarrow (pip install pyarrow), or convert the file to CSV ({exc})"
            ) from None
        except Exception as exc:  # noqa: BLE001 - any parser failure is reported with the file name
            raise DataFileError(f"{path}: not a readable Parquet file ({type(exc).__name__}: {exc})") from None
        table = table.astype(object).where(table.notna(), "").astype(str)
        table.index = np.arange(len(table)) + 1
        return table
    return read_delimited(path, sep=sep, encoding=encoding, what=what)


@dataclass(frozen=True)
class TabularDataset(FileDataset):
    """Interactions (and items) from CSV or Parquet files with named columns."""

    items_path: str | None = None
    user_col: str = "user"
    item_col: str = "item"
    domain_col: str = "domain"
    time_col: str | None = "timestamp"
    rating_col: str | None = None
    item_id_col: str = "item"
    item_domain_col: str = "domain"
    title_col: str | None = "title"
    text_cols: tuple[str, ...] = ("text",)
    sep: str = ","
    encoding: str = "utf-8"

    dataset_name = "tabular"

    def read(self) -> RawData:
        path = Path(self.path).expanduser()
        t = read_table(path, sep=self.sep, encoding=self.encoding, what="dataset 'tabular'")
        cols = [self.user_col, self.item_col, self.domain_col]
        optional = [c for c in (self.time_col, self.rating_col) if c is not None]
        require_columns(t, cols + optional, path=path, option="set user_col=, item_col=, domain_col=, time_col=, rating_col=")
        if len(t) == 0:
            raise DataFileError(f"{path}: the file has a header but no data rows; add interactions or name another file")
        require_values(t, cols + optional, path=path)
        present = sorted(set(t[self.domain_col]))
        domains = self.domains or tuple(present)
        for d in domains:
            if d not in present:
                near = closest(d, present)
                hint = f"; did you mean {', '.join(map(repr, near))}?" if near else ""
                raise DataFileError(
                    f"{path}: domain {d!r} has no rows in column {self.domain_col!r}{hint} (domains: {', '.join(present)})"
                )
        t = t[t[self.domain_col].isin(list(domains))]
        ts = to_seconds(t[self.time_col], path=path, column=self.time_col) if self.time_col else np.zeros(len(t), np.int64)
        rating = to_number(t[self.rating_col], path=path, column=self.rating_col) if self.rating_col else None
        raw = frame("", t[self.user_col].to_numpy(), t[self.item_col].to_numpy(), ts, rating)
        raw["domain"] = t[self.domain_col].to_numpy()
        items = self._items() if self.items_path else None
        sources = {d: str(path) for d in domains}
        return RawData(raw, items, sources, {"timestamps": bool(self.time_col), "domains": domains})

    def _items(self) -> pd.DataFrame:
        path = Path(str(self.items_path)).expanduser()
        t = read_table(path, sep=self.sep, encoding=self.encoding, what="dataset 'tabular' items")
        wanted = [self.item_domain_col, self.item_id_col, *([self.title_col] if self.title_col else []), *self.text_cols]
        require_columns(t, wanted, path=path, option="set item_id_col=, item_domain_col=, title_col=, text_cols=")
        require_values(t, [self.item_domain_col, self.item_id_col], path=path)
        title = t[self.title_col].astype(str) if self.title_col else ""
        text = t[list(self.text_cols)].astype(str).agg(" ".join, axis=1).str.strip() if self.text_cols else ""
        return pd.DataFrame({"domain": t[self.item_domain_col], "item": t[self.item_id_col], "title": title, "text": text})
