"""MovieLens with domains made from genres.

Reads ``ratings.dat``/``movies.dat`` (``::``-separated: MovieLens 1M and 10M) or
``ratings.csv``/``movies.csv`` (the CSV releases: ml-latest, ml-20m, ml-25m, ml-32m).
Genres are ``|``-separated. Each domain is a genre or a group of genres minus others
(``"Comedy"``, ``"thriller=Thriller|Crime|Mystery!Comedy"``; see :mod:`crossbench_datasets.genres`).
A movie goes to the first listed domain it matches (``genre_rule="first"``; with single-genre
domains only, the movie's own first chosen genre, as before groups existed), or only to a
domain when it matches exactly one (``genre_rule="exclusive"``); other movies are dropped.
Users are shared across genre domains by their MovieLens id.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from crossbench.data.io import DataFileError, find_file, read_delimited, require_columns, require_values, to_number
from crossbench_datasets.base import FileDataset, RawData
from crossbench_datasets.genres import GenreDomain, check_rule, parse_domains, split_by_genre

GENRES = (
    "Action", "Adventure", "Animation", "Children's", "Children", "Comedy", "Crime", "Documentary", "Drama", "Fantasy",
    "Film-Noir", "Horror", "IMAX", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)


@dataclass(frozen=True)
class MovieLensDataset(FileDataset):
    """MovieLens ratings split into genre domains.

    ``groups``: the parsed domain specs (``domains`` holds their names); empty means each
    entry of ``domains`` is a spec, parsed when the data is read.
    """

    groups: tuple[GenreDomain, ...] = ()
    genre_rule: str = "first"
    encoding: str | None = None

    dataset_name = "movielens"

    def _read_dat(self, ratings_path: Path, movies_path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
        enc = self.encoding or "latin-1"
        # "::" is split as ":" so the fast C parser can be used; the odd columns must be empty
        r = read_delimited(ratings_path, sep=":", header=False, names=[f"c{k}" for k in range(7)], encoding=enc,
                           quoting=csv.QUOTE_NONE, what="movielens ratings")
        if not len(r):
            raise DataFileError(f"{ratings_path} is empty")
        for gap in ("c1", "c3", "c5"):
            bad = r[gap] != ""
            if bad.any():
                line = r.index[int(np.argmax(bad.to_numpy()))]
                raise DataFileError(f"{ratings_path}: line {line}: expected UserID::MovieID::Rating::Timestamp")
        require_values(r, ["c0", "c2", "c4", "c6"], path=ratings_path)
        ratings = pd.DataFrame({"user": r["c0"], "item": r["c2"], "rating": r["c4"], "timestamp": r["c6"]}, index=r.index)
        m = read_delimited(movies_path, sep="::", header=False, names=["item", "title", "genres"], encoding=enc,
                           quoting=csv.QUOTE_NONE, what="movielens movies")
        require_values(m, ["item", "genres"], path=movies_path)
        return ratings, m

    def _read_csv(self, ratings_path: Path, movies_path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
        enc = self.encoding or "utf-8"
        r = read_delimited(ratings_path, sep=",", encoding=enc, what="movielens ratings", numeric=("rating", "timestamp"))
        if not len(r):
            raise DataFileError(f"{ratings_path} has a header but no ratings")
        require_columns(r, ["userId", "movieId", "rating", "timestamp"], path=ratings_path)
        require_values(r, ["userId", "movieId", "rating", "timestamp"], path=ratings_path)
        ratings = r.rename(columns={"userId": "user", "movieId": "item"})[["user", "item", "rating", "timestamp"]]
        m = read_delimited(movies_path, sep=",", encoding=enc, what="movielens movies")
        require_columns(m, ["movieId", "title", "genres"], path=movies_path)
        require_values(m, ["movieId", "genres"], path=movies_path)
        return ratings, m.rename(columns={"movieId": "item"})

    def read(self) -> RawData:
        check_rule(self.genre_rule, dataset=self.dataset_name)
        groups = self.groups or parse_domains(self.domains, dataset=self.dataset_name)
        root = self.root()
        ratings_path = find_file(root, ["ratings.dat", "ratings.csv"], what="dataset 'movielens'")
        if ratings_path.name.startswith("ratings.dat"):
            movies_path = find_file(root, ["movies.dat"], what="dataset 'movielens'")
            ratings, movies = self._read_dat(ratings_path, movies_path)
        else:
            movies_path = find_file(root, ["movies.csv"], what="dataset 'movielens'")
            ratings, movies = self._read_csv(ratings_path, movies_path)
        rating = to_number(ratings["rating"], path=ratings_path, column="rating")
        ts = to_number(ratings["timestamp"], path=ratings_path, column="timestamp", integer=True)
        genres = movies["genres"].astype(str)
        catalogue = pd.DataFrame(
            {
                "item": movies["item"],
                "title": movies["title"],
                "text": "Genres: " + genres.str.replace("|", ", ", regex=False),
                "genres": [tuple(gs.split("|")) for gs in genres],
            },
            index=movies.index,
        )
        sources = {
            g.name: f"{ratings_path} (genre {g.name})" if g.spec == g.name else f"{ratings_path} (genres {g.spec})"
            for g in groups
        }
        return split_by_genre(
            users=ratings["user"].to_numpy(), items=ratings["item"].to_numpy(), timestamps=ts, ratings=rating,
            movies=catalogue, domains=groups, rule=self.genre_rule, sources=sources, movies_path=movies_path,
        )
