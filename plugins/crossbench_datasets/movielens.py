"""MovieLens with domains made from genres.

Reads ``ratings.dat``/``movies.dat`` (``::``-separated: MovieLens 1M and 10M) or
``ratings.csv``/``movies.csv`` (the CSV releases: ml-latest, ml-20m, ml-25m, ml-32m).
Genres are ``|``-separated. Each chosen genre is a domain; a movie goes to the first of its
own listed genres that is among the chosen ones (``genre_rule="first"``), or only to a
chosen genre when it has exactly one of them (``genre_rule="exclusive"``); other movies are
dropped. Users are shared across genre domains by their MovieLens id.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from crossbench.data.io import DataFileError, find_file, read_delimited, require_columns, require_values, to_number
from crossbench.errors import CrossbenchError, closest
from crossbench_datasets.base import FileDataset, RawData, frame

GENRES = (
    "Action", "Adventure", "Animation", "Children's", "Children", "Comedy", "Crime", "Documentary", "Drama", "Fantasy",
    "Film-Noir", "Horror", "IMAX", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)


@dataclass(frozen=True)
class MovieLensDataset(FileDataset):
    """MovieLens ratings split into genre domains."""

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
        if self.genre_rule not in ("first", "exclusive"):
            raise CrossbenchError(f"dataset 'movielens': genre_rule must be 'first' or 'exclusive', got {self.genre_rule!r}")
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
        present = sorted({g for gs in movies["genres"] for g in str(gs).split("|")})
        for d in self.domains:
            if d not in present:
                near = closest(d, present)
                hint = f"; did you mean {', '.join(map(repr, near))}?" if near else ""
                raise DataFileError(f"{movies_path}: no movie has the genre {d!r}{hint} (genres: {', '.join(present)})")
        chosen = set(self.domains)
        assign = {}
        for item, gs in zip(movies["item"], movies["genres"]):
            mine = [g for g in str(gs).split("|") if g in chosen]
            if mine and (self.genre_rule == "first" or len(mine) == 1):
                assign[str(item)] = mine[0]
        domain = ratings["item"].astype(str).map(assign)
        keep = domain.notna().to_numpy()
        raw = frame("", ratings["user"].to_numpy()[keep], ratings["item"].to_numpy()[keep], ts[keep], rating[keep])
        raw["domain"] = domain.to_numpy()[keep]
        items = pd.DataFrame(
            {
                "domain": movies["item"].astype(str).map(assign),
                "item": movies["item"].astype(str),
                "title": movies["title"].astype(str),
                "text": "Genres: " + movies["genres"].astype(str).str.replace("|", ", ", regex=False),
            }
        ).dropna(subset=["domain"])
        sources = {d: f"{ratings_path} (genre {d})" for d in self.domains}
        meta = {"genre_rule": self.genre_rule, "ratings_outside_domains": int((~keep).sum())}
        return RawData(raw, items, sources, meta)
