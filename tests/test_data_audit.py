"""The leakage audit passes clean splits and catches every kind of planted leak."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from crossbench.data.audit import LeakageError, audit_split
from crossbench.data.model import CrossDomainData
from crossbench.data.protocols import GroundTruth, Split
from crossbench.errors import CrossbenchError
from crossbench_protocols import ColdStart, Warm


def make_data() -> CrossDomainData:
    rng = np.random.default_rng(0)
    rows = []
    for u in range(60):
        for d in ("books", "movies"):
            if d == "books" or u < 45:
                for i in rng.choice(30, 6, replace=False):
                    rows.append((d, f"user{u:02d}", f"{d[0]}{i:02d}", int(rng.integers(0, 1000))))
    return CrossDomainData.from_frames("audit", pd.DataFrame(rows, columns=["domain", "user", "item", "timestamp"]))


@pytest.fixture(scope="module")
def data() -> CrossDomainData:
    return make_data()


def with_target_rows(split: Split, rows: pd.DataFrame) -> Split:
    target = split.train.domain(split.target)
    inter = pd.concat([target.interactions, rows], ignore_index=True)
    domains = dict(split.train.domains)
    domains[split.target] = dataclasses.replace(target, interactions=inter)
    return dataclasses.replace(split, train=split.train.with_domains(domains))


def first_pair(truth: GroundTruth) -> tuple[int, int]:
    return int(truth.users[0]), int(truth.items_of(0)[0])


def test_clean_splits_pass(data: CrossDomainData) -> None:
    cold = audit_split(ColdStart(target="movies", test_fraction=0.5, seed=1).split(data))
    assert cold.checks == ("ground-truth-range", "test-pairs-in-train", "valid-pairs-in-train", "test-in-selection",
                           "cold-users-have-source", "cold-user-target-in-train")
    warm = audit_split(Warm(target="movies", cut_quantile=0.8).split(data))
    assert warm.checks[-1] == "after-cut-in-train"
    assert warm.to_dict()["passed"] is True


def test_test_pair_in_training_is_caught(data: CrossDomainData) -> None:
    split = Warm(target="movies", cut_quantile=0.8).split(data)
    u, i = first_pair(split.test)
    leaky = with_target_rows(split, pd.DataFrame({"user": [u], "item": [i], "timestamp": [0]}))
    with pytest.raises(LeakageError) as err:
        audit_split(leaky)
    assert err.value.check == "test-pairs-in-train"
    raw_user = data.user_ids[u]
    raw_item = data.domain("movies").items["item_id"].iloc[i]
    assert f"(user {raw_user}, item {raw_item})" in str(err.value) and "1 pair(s)" in str(err.value)
    assert isinstance(err.value, CrossbenchError)


def test_cold_test_user_target_history_in_training_is_caught(data: CrossDomainData) -> None:
    split = ColdStart(target="movies", seed=2).split(data)
    u = int(split.test.users[0])
    unseen = sorted(set(range(split.train.domain("movies").n_items)) - set(split.test.items_of(0).tolist()))[0]
    leaky = with_target_rows(split, pd.DataFrame({"user": [u], "item": [unseen], "timestamp": [5]}))
    pattern = r"\[cold-user-target-in-train\].*1 cold test user\(s\).*\(e.g. user " + data.user_ids[u]
    with pytest.raises(LeakageError, match=pattern):
        audit_split(leaky)


def test_validation_pair_in_training_is_caught(data: CrossDomainData) -> None:
    split = ColdStart(target="movies", seed=3).split(data)
    u, i = first_pair(split.valid)
    leaky = with_target_rows(split, pd.DataFrame({"user": [u], "item": [i], "timestamp": [1]}))
    with pytest.raises(LeakageError, match=r"\[valid-pairs-in-train\]: cold-start split of 'audit', target 'movies'"):
        audit_split(leaky)


def test_test_pairs_reachable_by_model_selection_are_caught(data: CrossDomainData) -> None:
    split = Warm(target="movies", cut_quantile=0.8).split(data)
    tu, ti = (np.repeat(split.test.users, np.diff(split.test.indptr)), split.test.items)
    vu, vi = (np.repeat(split.valid.users, np.diff(split.valid.indptr)), split.valid.items)
    # validation that also holds the first test pair: selecting on it would read the test set
    merged = GroundTruth.from_pairs(np.r_[vu, tu[:1]], np.r_[vi, ti[:1]])
    with pytest.raises(LeakageError, match=r"\[test-in-selection\]: .*test pairs are in the validation ground truth"):
        audit_split(dataclasses.replace(split, valid=merged))
    # cold-start: a test user among the validation users, even with another item
    cold = ColdStart(target="movies", seed=4).split(data)
    u = int(cold.test.users[0])
    spare = sorted(set(range(cold.train.domain("movies").n_items)) - set(cold.test.items_of(0).tolist()))[0]
    cvu = np.repeat(cold.valid.users, np.diff(cold.valid.indptr))
    valid = GroundTruth.from_pairs(np.r_[cvu, [u]], np.r_[cold.valid.items, [spare]])
    with pytest.raises(LeakageError, match=r"\[test-in-selection\]: .*1 test user\(s\) are also validation users"):
        audit_split(dataclasses.replace(cold, valid=valid))


@pytest.mark.parametrize("domain", ["books", "movies"])
def test_interactions_after_the_cut_are_caught_in_every_domain(data: CrossDomainData, domain: str) -> None:
    split = Warm(target="movies", cut_quantile=0.8).split(data)
    cut = split.cut_time
    assert cut is not None
    dom = split.train.domain(domain)
    late = dom.interactions.iloc[:1].assign(timestamp=cut + 7)
    if domain == "movies":  # a new item for that user so that only the time check fires
        have = set(dom.interactions.loc[dom.interactions["user"] == late["user"].iloc[0], "item"])
        late = late.assign(item=min(set(range(dom.n_items)) - have - set(split.test.items) - set(split.valid.items)))
    domains = dict(split.train.domains)
    domains[domain] = dataclasses.replace(dom, interactions=pd.concat([dom.interactions, late], ignore_index=True))
    leaky = dataclasses.replace(split, train=split.train.with_domains(domains))
    with pytest.raises(LeakageError, match=rf"\[after-cut-in-train\]: .*domain {domain!r} are at or after the time cut {cut}"):
        audit_split(leaky)


def test_out_of_range_ground_truth_is_caught(data: CrossDomainData) -> None:
    split = ColdStart(target="movies", seed=5).split(data)
    n_items = split.train.domain("movies").n_items
    bad = GroundTruth.from_pairs(np.array([0]), np.array([n_items]))
    with pytest.raises(LeakageError, match=r"\[ground-truth-range\]"):
        audit_split(dataclasses.replace(split, test=bad))
