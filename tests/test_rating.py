"""The rating task: MAE and RMSE by hand, the cold-start rating split, ranking-only models refused, a run end to end."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from crossbench.cli import cli
from crossbench.cli.common import CliState
from crossbench.data.model import CrossDomainData
from crossbench.data.protocols import FULL_RANKING, GroundTruth
from crossbench.errors import CrossbenchError
from crossbench.evaluate.rating import evaluate_rating, rating_errors, validation_rmse
from crossbench.plugin.interfaces import RunEnv
from crossbench.train.stages import EarlyStopping, Stage, StageData, StagedRecommender
from crossbench_protocols import ColdStart, ColdStartRating


def invoke(args: list[str]):
    return CliRunner().invoke(cli, args, obj=CliState())


def test_mae_and_rmse_against_hand_computed_values() -> None:
    # user 0 rated items 1 (4 stars) and 3 (2 stars); user 5 rated item 0 (5 stars)
    truth = GroundTruth.from_pairs(np.array([5, 0, 0]), np.array([0, 3, 1]), np.array([5.0, 2.0, 4.0]))
    assert truth.users.tolist() == [0, 5] and truth.items.tolist() == [1, 3, 0]
    assert truth.values is not None and truth.values.tolist() == [4.0, 2.0, 5.0]
    guess = {(0, 1): 3.5, (0, 3): 2.0, (5, 0): 3.0}  # errors -0.5, 0, -2

    def predict(users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return torch.tensor([guess[(int(u), int(i))] for u, i in zip(users, items)])

    result = evaluate_rating(predict, truth, chunk_size=2)  # two chunks: the values do not depend on it
    assert result.mode == "rating" and result.per_user == {} and result.users.tolist() == [0, 5]
    assert result.catalog["mae"] == pytest.approx(2.5 / 3, abs=1e-15)  # (0.5 + 0 + 2) / 3 = 0.833333
    assert result.catalog["rmse"] == pytest.approx(math.sqrt(4.25 / 3), abs=1e-15)  # sqrt((0.25 + 0 + 4) / 3) = 1.190238
    assert result.means == {"mae": result.catalog["mae"], "rmse": result.catalog["rmse"]}
    with pytest.raises(CrossbenchError, match="holds no ratings"):
        rating_errors(GroundTruth.from_pairs(np.array([0]), np.array([1])), np.array([3.0]))
    with pytest.raises(CrossbenchError, match="1 predicted rating"):
        rating_errors(truth, np.array([1.0, np.nan, 2.0]))


def test_a_pair_rated_twice_is_judged_on_its_mean_rating() -> None:
    truth = GroundTruth.from_pairs(np.array([2, 2, 1]), np.array([7, 7, 3]), np.array([1.0, 4.0, 5.0]))
    assert truth.items.tolist() == [3, 7] and truth.values is not None and truth.values.tolist() == [5.0, 2.5]


def _rated_data(with_ratings: bool = True) -> CrossDomainData:
    rng = np.random.default_rng(3)
    rows = []
    for u in range(30):
        for dom in ("books", "movies"):
            if dom == "books" and u >= 26:
                continue  # users 26-29: movies only (not shared)
            for t, item in enumerate(rng.choice(12, size=4, replace=False)):
                rows.append({"domain": dom, "user": f"u{u}", "item": f"{dom[0]}{item}", "timestamp": t,
                             "rating": float(rng.integers(1, 6))})
    frame = pd.DataFrame(rows)
    return CrossDomainData.from_frames("rated", frame if with_ratings else frame.drop(columns="rating"))


def test_cold_start_rating_split_keeps_each_held_out_rating() -> None:
    data = _rated_data()
    split = ColdStartRating(target="movies", test_fraction=0.3, valid_fraction=0.1, seed=2).split(data)
    ranking = ColdStart(target="movies", test_fraction=0.3, valid_fraction=0.1, seed=2).split(data)
    assert split.evaluation.label == "rating" and ranking.evaluation.label == "full ranking"
    assert split.test.users.tolist() == ranking.test.users.tolist()  # the same cold users as the ranking split
    movies_only = np.flatnonzero(np.isin(data.user_ids, [f"u{u}" for u in range(26, 30)]))
    assert len(movies_only) == 4 and not np.isin(split.test.users, movies_only).any()  # users not shared: never cold
    inter = data.domain("movies").interactions
    rating = {(int(u), int(i)): r for u, i, r in zip(inter["user"], inter["item"], inter["rating"])}
    assert split.test.values is not None
    for j, u in enumerate(split.test.users):
        items = split.test.items_of(j)
        values = split.test.values[split.test.indptr[j] : split.test.indptr[j + 1]]
        assert values.tolist() == [rating[(int(u), int(i))] for i in items]
    assert split.fingerprint() != ranking.fingerprint()
    with pytest.raises(CrossbenchError, match=r"target 'movies' of dataset 'rated' has no ratings"):
        ColdStartRating(target="movies").split(_rated_data(with_ratings=False))


def test_ranking_only_model_under_the_rating_task_exits_2_with_one_line(tmp_path: Path) -> None:
    out = invoke(["run", "--protocol", "cold-start-rating", "--model", "popularity", "--seeds", "0",
                  "--dataset-param", "n_users=200", "--dataset-param", "n_items=60", "--output", str(tmp_path / "r")])
    assert out.exit_code == 2
    lines = [ln for ln in out.output.splitlines() if ln.strip()]
    assert lines == [
        "crossbench: error: protocol 'cold-start-rating' is a rating task (MAE, RMSE) but model(s) 'popularity' only rank "
        "items (they do not declare predicts_ratings(); e.g. cmf, emcdr and ptupcdr do with objective=\"rating\"); "
        "drop them or use a ranking protocol"
    ]
    assert not (tmp_path / "r").exists()  # refused before any work


def _write_rated_csv(path: Path) -> None:
    data = _rated_data()
    rows = []
    for name, dom in data.domains.items():
        inter = dom.interactions
        rows.append(pd.DataFrame({"domain": name, "user": data.user_ids[inter["user"].to_numpy()],
                                  "item": dom.items["item_id"].to_numpy()[inter["item"].to_numpy()],
                                  "timestamp": inter["timestamp"], "rating": inter["rating"]}))
    pd.concat(rows).to_csv(path, index=False)


def _rating_experiment(tmp_path: Path, name: str, *, head: str, protocol: str, models: str) -> Path:
    """An experiment file on the hand-made rated CSV under the cold-start rating task."""
    _write_rated_csv(tmp_path / "inter.csv")
    exp = tmp_path / f"{name}.toml"
    exp.write_text(f"""name = "{name}"
seeds = [0]
{head}
[dataset]
name = "tabular"
path = "{tmp_path / 'inter.csv'}"
rating_col = "rating"
[protocol]
name = "cold-start-rating"
target = "movies"
{protocol}
{models}""")
    return exp


def test_rating_task_end_to_end(tmp_path: Path) -> None:
    exp = _rating_experiment(tmp_path, "rating", head='metrics = ["ndcg"]\nks = [5]', protocol="test_fraction = 0.3", models="""
[[models]]
name = "cmf"
objective = "rating"
dim = 4
epochs = 3
batch_size = 32
lr = 0.01
[[models]]
name = "emcdr"
objective = "rating"
dim = 4
epochs = 2
map_epochs = 2
""")
    res = tmp_path / "res"
    out = invoke(["run", str(exp), "--threads", "1", "-q", "--output", str(res)])
    assert out.exit_code == 0, out.output
    assert "→ movies (cold-start-rating, rating)" in out.output and "RATING task: MAE and RMSE" in out.output
    header = next(line for line in out.output.splitlines() if line.startswith("| model"))
    assert [c.strip() for c in header.split("|")[4:6]] == ["mae", "rmse"] and "ndcg" not in header  # never beside rankings
    for f in sorted((res / "runs").glob("movies-*.json")):
        rec = json.loads(f.read_text())
        ev = rec["evaluation"]
        assert rec["protocol"]["evaluation"] == "rating" and ev["mode"] == "rating"
        assert ev["columns"] == ["mae", "rmse"] and ev["primary"] == "mae" and ev["lower_is_better"] == ["mae", "rmse"]
        assert 0 < ev["metrics"]["mae"] <= ev["metrics"]["rmse"] < 10  # RMSE >= MAE always
        assert rec["fit"]["valid_metric"] == "rmse"  # early stopping read the validation users' ratings
    table = json.loads((res / "leaderboard.json").read_text())["sections"]
    assert [s["protocol"] for s in table] == ["cold-start-rating, rating"]
    ranked = [m["metrics"]["mae"]["mean"] for m in table[0]["models"]]
    assert ranked == sorted(ranked)  # an error: the lowest first
    # no per-K curve nor per-user-group bars: one error per run (each model's validation curve is drawn)
    assert [p.name for p in res.glob("plots/*.png") if not p.name.endswith("-curves.png")] == []
    check = invoke(["leaderboard", str(res), "--check", str(res / "leaderboard.md")])
    assert check.exit_code == 0, check.output


class _Constant(torch.nn.Module):
    """One number ``b``: every predicted rating, and item 1's ranking score ``2.5 - b`` (every other item 0)."""

    def __init__(self) -> None:
        super().__init__()
        self.b = torch.nn.Parameter(torch.zeros(()))


class _ConstantModel(StagedRecommender):
    """SGD on ``mean (b - 5)^2`` with lr 0.1 moves ``b`` by ``b <- 0.8 b + 1``: 1, 1.8, 2.44, 2.952, 3.3616, ..."""

    def __init__(self, *, rates: bool = True) -> None:
        self.rates = rates

    def settings(self):
        return {"rates": self.rates}

    def build(self, split, env):
        return _Constant()

    def stages(self, split, model, env):
        data = StageData({"rating": torch.full((4,), 5.0)})
        return [Stage("only", ("b",), lambda m, batch, gen: ((m.b - batch["rating"]) ** 2).mean(), data, epochs=20,
                      batch_size=4, lr=0.1, optimizer="sgd", stop=EarlyStopping(patience=3))]

    def score_users(self, model, users):
        scores = torch.zeros(len(users), self.n_items)
        scores[:, 1] = 2.5 - model.b
        return scores

    def predicts_ratings(self) -> bool:
        return self.rates

    def predict_ratings(self, users, items):
        return self.model.b.detach().expand(len(users))


def test_under_the_rating_task_early_stopping_keeps_the_epoch_of_lowest_validation_rmse() -> None:
    view = ColdStartRating(target="movies", test_fraction=0.3, valid_fraction=0.1, seed=2).split(_rated_data()).fit_view()
    cold = int(view.valid.users[0])  # a validation user: no movie in training, so item 1 is ranked
    valid = GroundTruth.from_pairs(np.array([cold]), np.array([1]), np.array([3.0]))  # one held-out rating: 3
    rating_view = dataclasses.replace(view, valid=valid)
    ranking_view = dataclasses.replace(view, valid=valid, evaluation=FULL_RANKING)
    b = [5 * (1 - 0.8**t) for t in range(1, 8)]  # b (from 0) after epochs 1..7: 1, 1.8, 2.44, 2.952, 3.3616, ...
    rmse = [abs(x - 3.0) for x in b]  # 2, 1.2, 0.56, 0.048 (lowest: epoch 4), 0.3616, 0.68928, 0.951424
    env = RunEnv(registry=None, seed=0, progress=False)

    model = _ConstantModel()
    model.n_items = view.train.domain("movies").n_items
    report = model.fit(rating_view, env=env)
    assert report.valid_metric == "rmse" and report.best_epoch == 4 and report.epochs == 7  # 3 worse epochs after 4
    assert report.history == pytest.approx(rmse, abs=1e-5)
    assert report.valid_score == pytest.approx(0.048, abs=1e-5)
    assert float(model.model.b.detach()) == pytest.approx(2.952, abs=1e-5)  # epoch 4's weights restored
    assert validation_rmse(model.predict_ratings, valid) == pytest.approx(0.048, abs=1e-5)

    # the same model on a ranking split keeps the epoch of highest validation NDCG@10: item 1 scores
    # 2.5 - b, first (NDCG 1) in epochs 1-3, last among ties (NDCG 0) from epoch 4 on
    model = _ConstantModel()
    model.n_items = view.train.domain("movies").n_items
    report = model.fit(ranking_view, env=env)
    assert report.valid_metric == "ndcg@10" and report.best_epoch == 1 and report.epochs == 4
    assert report.history == pytest.approx([1.0, 1.0, 1.0, 0.0])
    assert float(model.model.b.detach()) == pytest.approx(1.0, abs=1e-6)

    unrated = _ConstantModel(rates=False)
    unrated.n_items = view.train.domain("movies").n_items
    with pytest.raises(CrossbenchError, match="rating task: early stopping reads the validation users' ratings"):
        unrated.fit(rating_view, env=env)


def test_tuning_under_the_rating_task_minimises_validation_rmse(tmp_path: Path) -> None:
    import optuna

    exp = _rating_experiment(tmp_path, "rating-tune", head="", protocol="test_fraction = 0.3\nvalid_fraction = 0.2", models="""
[[models]]
name = "emcdr"
objective = "rating"
dim = 4
epochs = 3
map_epochs = 3
""")
    res = tmp_path / "res"
    out = invoke(["tune", str(exp), "--trials", "3", "--pruner", "none", "--threads", "1", "-q", "--output", str(res)])
    assert out.exit_code == 0, out.output
    rec = json.loads(next((res / "runs").glob("movies-emcdr-*.json")).read_text())
    tuning = rec["model"]["tuning"]
    study = optuna.load_study(study_name=tuning["study"], storage=f"sqlite:///{res / 'tuning.db'}")
    assert study.direction == optuna.study.StudyDirection.MINIMIZE
    values = [t.value for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(values) == 3 and len(set(values)) > 1
    assert tuning["metric"] == "rmse" and tuning["best_valid"] == min(values)  # the lowest validation RMSE wins
    assert study.user_attrs["crossbench:meta"]["crossbench:objective"] == "rmse"
