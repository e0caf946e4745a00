"""Replay, on hand-made data: a shown item is credited only when the user really took it later; nothing else ever is."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crossbench.data.model import CrossDomainData
from crossbench.data.protocols import GroundTruth, Split
from crossbench.errors import CrossbenchError
from crossbench.loop.feedback import FeedbackContext, check_taken, examination
from crossbench.loop.simulation import Simulation
from crossbench.plugin.interfaces import RunEnv
from crossbench.plugin.manager import get_plugin_manager
from crossbench.plugin.registry import Registry
from crossbench.plugin.simulation_settings import SimulationSettings
from crossbench_basic.specs import popularity
from crossbench_feedback import replay


def _data() -> CrossDomainData:
    rows = []
    for u in range(8):  # every user reads two books; users 0..5 watched movies m0..m5 in turn
        rows += [("books", f"u{u}", f"b{u % 3}", 1), ("books", f"u{u}", f"b{(u + 1) % 3}", 2)]
        rows += [("movies", f"u{u}", f"m{(u + j) % 6}", 10 + j) for j in range(3)]
    frame = pd.DataFrame(rows, columns=["domain", "user", "item", "timestamp"])
    return CrossDomainData.from_frames("hand", frame, domain_order=["books", "movies"])


def test_replay_credits_exactly_the_shown_items_of_the_future():
    data = _data()
    future = GroundTruth.from_pairs(np.array([0, 0, 1]), np.array([2, 4, 5]))  # user 0 took m2, m4 later; user 1 took m5
    fb = replay()
    fb.start(FeedbackContext(data=data, target="movies", future=future, seed=0))
    users = np.array([0, 1, 2])
    shown = np.array([[4, 3, 2, -1], [2, 4, 0, 5], [2, 4, 5, 1]])
    taken = fb.respond(users, shown, round=1, rng=np.random.default_rng(0))
    expected = np.array([[True, False, True, False], [False, False, False, True], [False, False, False, False]])
    np.testing.assert_array_equal(taken, expected)
    # with a position bias a user looks at fewer ranks: a subset of the unbiased credit, never more
    biased = replay(position_bias=2.0)
    biased.start(FeedbackContext(data=data, target="movies", future=future, seed=0))
    for seed in range(20):
        got = biased.respond(users, shown, round=1, rng=np.random.default_rng(seed))
        assert not (got & ~expected).any()
    assert examination(4, 2.0) == pytest.approx([1.0, 0.25, 1 / 9, 1 / 16])


def test_a_replayed_simulation_takes_nothing_but_the_future(tmp_path):
    data = _data()
    n_items = data.domain("movies").n_items
    test_users = np.array([0, 1, 2, 3])
    movies = data.domain("movies").interactions
    held = movies["user"].isin(test_users)
    test = GroundTruth.from_pairs(movies["user"][held].to_numpy(), movies["item"][held].to_numpy())
    train = data.with_domains({**data.domains, "movies": type(data.domain("movies"))(
        name="movies", interactions=movies[~held].reset_index(drop=True), items=data.domain("movies").items)})
    split = Split(protocol="hand", target="movies", train=train, valid=GroundTruth.from_pairs(np.zeros(0), np.zeros(0)), test=test, cold=True)
    registry = Registry(get_plugin_manager())
    settings = SimulationSettings(rounds=3, k=3, feedback="replay", warm_users=2, probe=0.3)
    sim = Simulation(tmp_path / "r.json", tmp_path / "r.npz", settings, seed=0)
    record = sim.run(split, data, popularity(), replay(), env=RunEnv(registry=registry, progress=False),
                     metrics=registry.metrics(["ndcg", "recall"]), header={"fingerprint": "x"})
    with np.load(tmp_path / "r.npz") as state:
        taken = set(zip(state["user"].tolist(), state["item"].tolist()))
    from crossbench.loop.simulation import population

    pop = population(split, settings, seed=0)
    future = {(int(u), int(i)) for j, u in enumerate(pop.future.users) for i in pop.future.items_of(j)}
    probes = {(int(u), int(i)) for j, u in enumerate(pop.probe.users) for i in pop.probe.items_of(j)}
    assert taken, record["rounds"]
    assert taken <= future and not taken & probes
    # every test user's held-out movies are split into probes and creditable items, none lost or added
    truth = {(int(u), int(i)) for j, u in enumerate(test.users) for i in test.items_of(j)}
    assert {p for p in future | probes if p[0] in test_users} == truth
    assert all(0 <= i < n_items for _, i in taken)


def test_a_feedback_model_crediting_an_empty_slot_is_refused():
    shown = np.array([[1, -1]])
    with pytest.raises(CrossbenchError, match="credited a position where no item was shown"):
        check_taken(np.array([[False, True]]), shown, name="odd")
    with pytest.raises(CrossbenchError, match="expected bool"):
        check_taken(np.array([[1, 0]]), shown, name="odd")
