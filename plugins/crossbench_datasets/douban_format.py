"""Douban book, movie and music ratings (the dumps used by DTCDR and GA-DTCDR).

Each domain is one tab-separated file with a header, by default ``bookreviews_cleaned.txt``,
``moviereviews_cleaned.txt`` and ``musicreviews_cleaned.txt``, with columns ``user_id``,
``book_id``/``movie_id``/``music_id``, ``rating`` and ``time`` (a date or a Unix time);
other columns (``labels``, ``comment``, ...) are ignored. Header names may be quoted.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass

from crossbench.data.io import DataFileError, find_file, read_delimited, require_columns, require_values, to_number, to_seconds
from crossbench.errors import CrossbenchError, unknown_name_message
from crossbench_datasets.base import FileDataset, RawData, concat, frame

DOMAINS = ("book", "movie", "music")


@dataclass(frozen=True)
class DoubanDataset(FileDataset):
    """Douban domains from the per-domain review files."""

    encoding: str = "utf-8"
    file_pattern: str = "{domain}reviews_cleaned.txt"

    dataset_name = "douban"

    def read(self) -> RawData:
        root = self.root()
        parts, sources = [], {}
        for d in self.domains:
            if d not in DOMAINS:
                raise CrossbenchError(unknown_name_message("Douban domain", d, DOMAINS))
            path = find_file(root, [self.file_pattern.format(domain=d)], what=f"dataset 'douban', domain {d!r}")
            sources[d] = str(path)
            t = read_delimited(path, sep="\t", encoding=self.encoding, quoting=csv.QUOTE_NONE, what=f"douban {d}")
            if not len(t):
                raise DataFileError(f"{path}: domain {d!r} has a header but no ratings")
            item_col = f"{d}_id"
            cols = ["user_id", item_col, "rating", "time"]
            require_columns(t, cols, path=path)
            t = t[cols].apply(lambda c: c.str.strip().str.strip('"'))
            require_values(t, cols, path=path)
            rating = to_number(t["rating"], path=path, column="rating")
            ts = to_seconds(t["time"], path=path, column="time")
            parts.append(frame(d, t["user_id"].to_numpy(), t[item_col].to_numpy(), ts, rating))
        return RawData(concat(parts), None, sources)
