"""Preprocessing steps on hand-checked frames, and their record."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from crossbench.data.preprocess import Preprocessing, build, deduplicate, kcore, overlap_counts, threshold
from crossbench.errors import CrossbenchError


def frame(rows: list[tuple]) -> pd.DataFrame:
    cols = ["domain", "user", "item", "timestamp", "rating"][: len(rows[0])]
    return pd.DataFrame(rows, columns=cols)


def test_kcore_is_iterated_to_a_fixed_point_per_domain() -> None:
    # In domain A with k=2: item z has one rating -> dropped; then user u3 has one left -> dropped;
    # then item y has one left -> dropped; then user u2 has one left -> dropped; u1 and u4 with w, x remain.
    rows = [
        ("A", "u1", "w", 1), ("A", "u1", "x", 2), ("A", "u4", "w", 3), ("A", "u4", "x", 4),
        ("A", "u2", "x", 5), ("A", "u2", "y", 6), ("A", "u3", "y", 7), ("A", "u3", "z", 8),
        # domain B is judged on its own counts: u3 has two interactions there and stays
        ("B", "u3", "p", 1), ("B", "u3", "q", 2), ("B", "u1", "p", 3), ("B", "u1", "q", 4),
    ]
    out = kcore(frame(rows), 2)
    a = set(map(tuple, out[out["domain"] == "A"][["user", "item"]].to_numpy()))
    assert a == {("u1", "w"), ("u1", "x"), ("u4", "w"), ("u4", "x")}
    b = out[out["domain"] == "B"]
    assert len(b) == 4


def test_threshold_and_deduplicate() -> None:
    f = frame([("A", "u", "i", 30, 5.0), ("A", "u", "i", 10, 4.0), ("A", "u", "j", 20, 2.0), ("B", "u", "i", 5, 4.0)])
    kept = threshold(f, 4.0, dataset="t")
    assert kept["timestamp"].tolist() == [30, 10, 5]
    dedup = deduplicate(kept)
    assert dedup[["domain", "item", "timestamp"]].values.tolist() == [["A", "i", 10], ["B", "i", 5]]  # the earliest
    with pytest.raises(CrossbenchError, match=r"min_rating=4.0 needs ratings"):
        threshold(f.drop(columns="rating"), 4.0, dataset="t")


def test_overlap_counts() -> None:
    f = frame([("A", "u1", "i", 1), ("A", "u2", "i", 1), ("B", "u2", "j", 1), ("C", "u1", "k", 1), ("C", "u3", "k", 1)])
    assert overlap_counts(f, ["A", "B", "C"]) == {"A": 2, "B": 1, "C": 1}


def test_build_records_every_step() -> None:
    rows = [
        ("books", "u1", "b1", 1, 5.0), ("books", "u1", "b1", 2, 5.0), ("books", "u1", "b2", 3, 1.0),
        ("books", "u2", "b1", 4, 4.0), ("books", "u2", "b2", 5, 4.0), ("books", "u1", "b2", 6, 4.0),
        ("movies", "u1", "m1", 1, 5.0), ("movies", "u2", "m1", 2, 5.0), ("movies", "u1", "m2", 3, 5.0),
        ("movies", "u2", "m2", 4, 5.0), ("movies", "u3", "m3", 5, 5.0),
    ]
    items = pd.DataFrame({"domain": ["books", "movies"], "item": ["b1", "m9"], "title": ["Dune", "Unseen"], "text": ["sand", ""]})
    data = build("toy", frame(rows), items, domains=["books", "movies"],
                 preprocessing=Preprocessing(min_rating=4, deduplicate=True, kcore=2, min_overlap=2))
    steps = data.meta["preprocessing"]
    assert [s["step"] for s in steps] == ["read", "min_rating", "deduplicate", "kcore", "min_overlap", "remap_ids", "item_text"]
    counts = [(s["rows_before"], s["rows_after"]) for s in steps[:4]]
    assert counts == [(11, 11), (11, 10), (10, 9), (9, 8)]  # b2@3 below 4; b1 twice for u1; u3/m3 not in the 2-core
    assert steps[3]["users_after"] == 2 and steps[3]["items_after"] == 4
    assert steps[4]["params"]["overlap"] == {"books": 2, "movies": 2}
    assert steps[6]["params"]["items_with_text"] == {"books": 1, "movies": 0}
    assert data.domain("books").interactions["timestamp"].tolist() == [1, 6, 4, 5]
    assert data.meta["default_target"] == "movies"
    json.dumps(data.meta)
    with pytest.raises(CrossbenchError, match=r"domain 'books' shares 2 users with 'movies' \(min_overlap=3\)"):
        build("toy", frame(rows), None, domains=["books", "movies"], preprocessing=Preprocessing(kcore=2, min_overlap=3))
    with pytest.raises(CrossbenchError, match=r"domain 'music' has no interactions in its file \(m\.txt\)"):
        build("toy", frame(rows), None, domains=["books", "music"], preprocessing=Preprocessing(), sources={"music": "m.txt"})
    # without min_rating, deduplication leaves books with 4 rows, each user with 2 items: none has 3
    # without min_rating, deduplication leaves books 4 rows, each user with 2 items: none has 3
    with pytest.raises(CrossbenchError, match=r"domain 'books' has no interactions left after kcore=3 \(it had 4 before\)"):
        build("toy", frame(rows), None, domains=["books", "movies"], preprocessing=Preprocessing(kcore=3))
