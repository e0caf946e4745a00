"""The cold-start split, on a hand-checked case."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crossbench.data.model import CrossDomainData
from crossbench.errors import CrossbenchError
from crossbench_protocols import ColdStart


def tiny() -> CrossDomainData:
    rows = []
    # users a..j in books; a..h in movies; i, j only in books; k only in movies
    for u in "abcdefghij":
        rows += [("books", u, "b1", 1), ("books", u, "b2", 2)]
    for n, u in enumerate("abcdefgh"):
        rows += [("movies", u, f"m{n % 3}", 3), ("movies", u, "m9", 4)]
    rows += [("movies", "k", "m1", 5)]
    frame = pd.DataFrame(rows, columns=["domain", "user", "item", "timestamp"])
    return CrossDomainData.from_frames("tiny", frame)


def test_hand_checked_split():
    data = tiny()
    split = ColdStart(target="movies", test_fraction=0.5, valid_fraction=0.25, seed=0).split(data)
    overlap = set(data.overlap("books", "movies").tolist())
    assert len(overlap) == 8  # a..h
    test = set(split.test.users.tolist())
    valid = set(split.valid.users.tolist())
    assert len(test) == 4 and len(valid) == 2
    assert test | valid <= overlap and not test & valid
    movies = split.train.domain("movies").interactions
    # held-out users have no target interactions left; everyone keeps books
    assert not set(movies["user"]) & (test | valid)
    assert split.train.domain("books").n_interactions == data.domain("books").n_interactions
    assert movies.shape[0] == data.domain("movies").n_interactions - 2 * 6
    # each test user's ground truth is exactly their movies
    orig = data.domain("movies").interactions
    for j, u in enumerate(split.test.users):
        assert sorted(split.test.items_of(j).tolist()) == sorted(orig[orig.user == u]["item"].tolist())
    # user k (movies only) is never a test user
    k = int(np.where(data.user_ids == "k")[0][0])
    assert k not in test and k not in valid


def test_seeded_and_fingerprinted():
    data = tiny()
    a = ColdStart(target="movies", seed=1).split(data)
    b = ColdStart(target="movies", seed=1).split(data)
    c = ColdStart(target="movies", seed=2).split(data)
    assert a.fingerprint() == b.fingerprint()
    assert np.array_equal(a.test.users, b.test.users)
    assert a.fingerprint() != c.fingerprint() or not np.array_equal(a.test.users, c.test.users)


def test_errors():
    data = tiny()
    with pytest.raises(CrossbenchError, match="did you mean 'movies'"):
        ColdStart(target="movie").split(data)
    with pytest.raises(CrossbenchError, match="below 1"):
        ColdStart(target="movies", test_fraction=0.8, valid_fraction=0.3).split(data)
    lone = pd.DataFrame([("books", "a", "x", 1), ("movies", "b", "y", 1)], columns=["domain", "user", "item", "timestamp"])
    with pytest.raises(CrossbenchError, match="overlapping users"):
        ColdStart(target="movies").split(CrossDomainData.from_frames("lone", lone))
