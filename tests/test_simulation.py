"""The feedback loop: planted preferences teach a cross-domain model its cold users; popularity feeds on itself."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from crossbench.cli import CliState, cli
from crossbench.experiment import DatasetRef, Experiment, ModelRef, ProtocolRef, RunOptions
from crossbench.loop.report import area, rounds_to_reach
from crossbench.loop.runner import run_simulations
from crossbench.loop.simulation import exposure, gini
from crossbench.plugin.manager import get_plugin_manager
from crossbench.plugin.registry import Registry
from crossbench.plugin.simulation_settings import SimulationSettings

DATA = DatasetRef("synthetic", {"n_users": 1500, "n_items": 300})
PLANTED = SimulationSettings(rounds=4, k=10, feedback="planted", users=250, warm_users=150)


def _simulate(tmp_path: Path, models, settings: SimulationSettings, data: DatasetRef = DATA) -> dict[str, dict]:
    torch.set_num_threads(1)
    exp = Experiment(name="sim", dataset=data, protocol=ProtocolRef("cold-start", (), {"test_fraction": 0.3, "valid_fraction": 0.1}),
                     models=tuple(models), metrics=("recall", "ndcg", "hr", "mrr"), seeds=(0,))
    records = run_simulations(exp, settings, registry=Registry(get_plugin_manager()),
                              options=RunOptions(output_dir=tmp_path, threads=1, progress=False))
    return {r["model"]["label"]: r for r in records}


def _series(rec: dict, group: str, key: str = "ndcg@10") -> list[float]:
    return [r["accuracy"][group][key] for r in rec["rounds"]]


@pytest.fixture(scope="module")
def planted_run(tmp_path_factory) -> tuple[dict[str, dict], Path]:
    models = [ModelRef("popularity"), ModelRef("shared-mean", {"epochs": 4, "dim": 16})]
    folder = tmp_path_factory.mktemp("planted")
    return _simulate(folder, models, PLANTED), folder


@pytest.fixture(scope="module")
def planted(planted_run) -> dict[str, dict]:
    return planted_run[0]


@pytest.mark.slow  # model quality: a four-round feedback loop on 1,500 users
def test_cold_users_warm_up_under_a_cross_domain_model(planted):
    rec = planted["shared-mean"]
    cold = _series(rec, "cold")
    assert rec["population"]["cold"] == 250 and rec["population"]["warm"] == 150
    assert rec["update"].startswith("own update")  # warm-started fine-tuning
    # cold users' NDCG@10 on their probe items rises round after round and ends far above round 0
    assert all(b > a for a, b in zip(cold, cold[1:])), cold
    assert cold[-1] > 1.3 * cold[0], cold
    assert sum(r["taken"] for r in rec["rounds"]) > 500
    assert area(cold) > cold[0]


@pytest.mark.slow  # model quality: a four-round feedback loop on 1,500 users
def test_popularity_concentrates_the_interactions_it_learns_from(planted):
    pop = planted["popularity"]
    assert pop["update"] == "refit"
    inter = [r["exposure"]["interaction_gini"] for r in pop["rounds"][1:]]
    assert all(b > a for a, b in zip(inter, inter[1:])), inter
    cd = [r["exposure"]["interaction_gini"] for r in planted["shared-mean"]["rounds"][1:]]
    assert inter[-1] - inter[0] > 1.5 * (cd[-1] - cd[0]) > 0  # faster than under the cross-domain model
    # popularity shows a few head items to everyone: far less coverage, far higher exposure Gini than shared-mean
    for r_pop, r_cd in zip(pop["rounds"][1:], planted["shared-mean"]["rounds"][1:]):
        assert r_pop["exposure"]["gini"] > 0.9 > r_cd["exposure"]["gini"]
        assert r_pop["exposure"]["coverage"] < 0.2 < r_cd["exposure"]["coverage"]


@pytest.mark.slow  # the four-round feedback loop on 1,500 users
def test_reports_are_written(planted_run):
    records, folder = planted_run
    text = (folder / "simulations.md").read_text()
    cd = records["shared-mean"]
    row = next(line for line in text.splitlines() if line.startswith("| shared-mean"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert float(cells[2]) == pytest.approx(cd["rounds"][-1]["accuracy"]["all"]["ndcg@10"], abs=5e-5)
    assert float(cells[5]) == pytest.approx(area(_series(cd, "all")), abs=5e-5)
    assert float(cells[7]) == rounds_to_reach(cd)
    assert text.index("| shared-mean") < text.index("| popularity")  # ranked by the area under the curve
    assert (folder / "simulation-movies.png").read_bytes()[:4] == b"\x89PNG"
    rounds = (folder / "simulation-rounds.md").read_text()
    assert rounds.count("|       4 |") == 2  # round 4 of each model


def test_replay_credits_only_held_out_future_items(tmp_path):
    rec = _simulate(tmp_path, [ModelRef("popularity")], SimulationSettings(rounds=3, k=10, feedback="replay", users=200, warm_users=100))
    rec = rec["popularity"]
    with np.load(tmp_path / "simulations" / "movies-popularity-seed0.taken.npz") as state:
        taken = set(zip(state["user"].tolist(), state["item"].tolist()))
    from crossbench.loop.simulation import population
    from crossbench.plugin.build import make_protocol

    data = Registry(get_plugin_manager()).get("datasets", "synthetic").factory(n_users=1500, n_items=300).load()
    split = make_protocol(Registry(get_plugin_manager()), "cold-start", target="movies", seed=0, test_fraction=0.3, valid_fraction=0.1).split(data)
    pop = population(split, SimulationSettings(rounds=3, users=200, warm_users=100), seed=0)
    future = {(int(u), int(i)) for j, u in enumerate(pop.future.users) for i in pop.future.items_of(j)}
    probes = {(int(u), int(i)) for j, u in enumerate(pop.probe.users) for i in pop.probe.items_of(j)}
    assert taken and taken <= future and not taken & probes
    assert sum(r["taken"] for r in rec["rounds"]) == len(taken)


def test_gini_and_coverage_by_hand():
    assert gini(np.array([0, 0, 0, 4])) == pytest.approx(0.75)  # (2*16)/(4*4) - 5/4
    assert gini(np.array([1, 1, 1, 1])) == pytest.approx(0.0)
    assert gini(np.array([1, 3])) == pytest.approx(0.25)  # (2*(1+6))/(2*4) - 3/2
    shown = np.array([[0, 1, -1], [0, 2, -1]])
    got = exposure(shown, 5)  # counts 2, 1, 1, 0, 0
    assert got["coverage"] == pytest.approx(3 / 5)
    assert got["gini"] == pytest.approx((2 * (4 * 1 + 3 * 1 + 5 * 2)) / (5 * 4) - 6 / 5)


def test_rounds_to_reach_and_area_by_hand():
    def rec(cold, warm):
        return {"settings": {"primary": "ndcg@10"},
                "rounds": [{"accuracy": {"cold": {"ndcg@10": c}, "warm": {"ndcg@10": w}, "all": {"ndcg@10": c}}} for c, w in zip(cold, warm)]}
    assert rounds_to_reach(rec([0.1, 0.2, 0.31, 0.4], [0.3, 0.5, 0.5, 0.5])) == 2
    assert rounds_to_reach(rec([0.1, 0.2], [0.3, 0.3])) is None
    assert area([0.0, 1.0, 1.0]) == pytest.approx((0.5 + 1.0) / 2)


def test_bad_simulation_settings_exit_2_before_any_work(tmp_path):
    runner = CliRunner()
    base = ["simulate", "--model", "popularity", "--dataset-param", "n_users=400", "--dataset-param", "n_items=80", "-q", "--threads", "1"]
    cases = [
        (["--rounds", "0"], "rounds must be at least 1"),
        (["--feedback", "replai"], "did you mean 'replay'"),
        (["--feedback", "planted", "--feedback-param", "position_bias=-1"], "position_bias must be 0 (none) or positive"),
        (["--feedback", "replay", "--feedback-param", "bias=1"], "has no hyperparameter 'bias'"),
        (["--feedback-param", "x"], "expected KEY=VALUE"),
    ]
    for extra, message in cases:
        out = tmp_path / f"out{len(extra)}"
        res = runner.invoke(cli, [*base, *extra, "--output", str(out)], obj=CliState())
        assert res.exit_code == 2 and message in res.stderr, res.output
        assert not out.exists()
    for place, message in (("/proc/crossbench-sim", "cannot write there"), (str(tmp_path / "exp-file"), "is an existing file")):
        (tmp_path / "exp-file").write_text("x")
        res = runner.invoke(cli, [*base, "--output", place], obj=CliState())
        assert res.exit_code == 2 and message in res.stderr, res.output
    toml = tmp_path / "exp.toml"
    toml.write_text('[[models]]\nname = "popularity"\n[dataset]\nname = "movielens-100k"\n[simulation]\nfeedback = "planted"\n')
    res = runner.invoke(cli, ["simulate", str(toml), "-q", "--output", str(tmp_path / "ml")], obj=CliState())
    assert res.exit_code == 2 and "knows the preferences of the 'synthetic' dataset only" in res.stderr, res.output
    toml.write_text('[[models]]\nname = "popularity"\n[simulation]\nround = 3\n')
    res = runner.invoke(cli, ["simulate", str(toml), "-q", "--output", str(tmp_path / "typo")], obj=CliState())
    assert res.exit_code == 2 and "has no setting 'round'; did you mean 'rounds'?" in res.stderr, res.output


def test_experiment_file_section_drives_the_simulation(tmp_path):
    toml = tmp_path / "exp.toml"
    toml.write_text(
        'name = "loop"\nseeds = [0]\n[dataset]\nname = "synthetic"\nn_users = 400\nn_items = 80\n[[models]]\nname = "popularity"\n'
        '[simulation]\nrounds = 2\nk = 5\nusers = 40\nwarm_users = 20\nfeedback = { name = "planted", position_bias = 1.0 }\n'
    )
    res = CliRunner().invoke(cli, ["simulate", str(toml), "-q", "--threads", "1", "--output", str(tmp_path / "out")], obj=CliState())
    assert res.exit_code == 0, res.output
    rec = json.loads((tmp_path / "out" / "simulations" / "movies-popularity-seed0.json").read_text())
    assert rec["finished"] and len(rec["rounds"]) == 3 and rec["settings"]["k"] == 5
    assert rec["feedback"] == {"name": "planted", "params": {"draws": None, "position_bias": 1.0}}
    assert rec["population"]["users"] == 60


def test_a_simulation_section_leaves_run_fingerprints_alone(tmp_path):
    from crossbench.experiment import default_experiment, experiment_fingerprint
    from crossbench.experiment.tomlfile import load_experiment

    plain = tmp_path / "a.toml"
    plain.write_text('[[models]]\nname = "popularity"\n')
    with_sim = tmp_path / "b.toml"
    with_sim.write_text('[[models]]\nname = "popularity"\n[simulation]\nrounds = 3\nprobe = 0.25\n')
    defaults = default_experiment(get_plugin_manager())
    a, b = load_experiment(plain, defaults), load_experiment(with_sim, defaults)
    assert b.simulation == SimulationSettings(rounds=3, probe=0.25)
    assert experiment_fingerprint(a) == experiment_fingerprint(b)
