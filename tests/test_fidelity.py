"""The fidelity benchmark's converters, crossbench side and report, on tiny generated data.

The reference runs need their own interpreters and checkouts outside this repository; they run
here only when ``CROSSBENCH_PTUPCDR_REF`` and ``CROSSBENCH_PTUPCDR_PYTHON`` (the PTUPCDR
authors' code) or ``CROSSBENCH_RECBOLE_PYTHON`` (recbole==1.2.1) are set, and are skipped
otherwise.
"""

from __future__ import annotations

import ast
import math
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import fidelity  # noqa: E402
from fidelity_cross import EpochProbe, fit_ranking_model, fit_rating_model, mae_rmse, ranking_metrics, rating_split  # noqa: E402
from fidelity_data import ranking_task, rating_task, split_counts, write_ptupcdr, write_recbole  # noqa: E402
from fidelity_ptupcdr import parse_log, run_reference  # noqa: E402
from fidelity_recbole_cdr import crossbench_cdr_model, run_recbole_cdr, write_recbole_cdr  # noqa: E402
from fidelity_report import Result, Spread, summarise, verdict  # noqa: E402
from fidelity_sequence import fit_sequence_model, history_before_test, sequence_task, write_recbole_sequence  # noqa: E402

from crossbench.data.protocols import GroundTruth  # noqa: E402

PTUPCDR_REF = os.environ.get("CROSSBENCH_PTUPCDR_REF")
PTUPCDR_PYTHON = os.environ.get("CROSSBENCH_PTUPCDR_PYTHON")
RECBOLE_PYTHON = os.environ.get("CROSSBENCH_RECBOLE_PYTHON")
RECBOLE_CDR_REF = os.environ.get("CROSSBENCH_RECBOLE_CDR_REF")
RECBOLE_CDR_PYTHON = os.environ.get("CROSSBENCH_RECBOLE_CDR_PYTHON")


def tiny_domains(seed: int = 0, n_target_items: int = 10) -> tuple[pd.DataFrame, pd.DataFrame]:
    """30 users: 0-19 rate 5 of 12 source items, 10-29 five target items (10-19 in both domains)."""
    rng = np.random.default_rng(seed)

    def domain(users: range, n_items: int) -> pd.DataFrame:
        rows = [(u, i, int(rng.integers(1, 6)), 1000 + 10 * u + i) for u in users for i in rng.choice(n_items, 5, replace=False)]
        return pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp"])

    return domain(range(0, 20), 12), domain(range(10, 30), n_target_items)


def tiny_task(seed: int = 0):  # noqa: ANN201
    source, target = tiny_domains()
    return rating_task(source, target, n_users=30, n_source_items=12, n_target_items=10, seed=seed)


def test_rating_task_holds_out_every_target_rating_of_a_fifth_of_the_overlapping_users() -> None:
    task = tiny_task()
    assert len(task.test_users) == 2  # round(0.2 * 10 overlapping users)
    assert set(task.test_users) <= set(range(10, 20))
    assert len(task.test) == 2 * 5 and set(task.test["user"]) == set(task.test_users)
    assert len(task.target_train) == 100 - 10 and not set(task.target_train["user"]) & set(task.test_users)
    assert list(task.overlap_train_users()) == sorted(set(range(10, 20)) - set(task.test_users))
    again = tiny_task()
    assert list(again.test_users) == list(task.test_users) and list(tiny_task(seed=1).test_users) != list(task.test_users)


def test_write_ptupcdr_writes_the_references_four_files_with_its_item_numbering(tmp_path: Path) -> None:
    task = tiny_task()
    out = write_ptupcdr(task, tmp_path, source_name="src", target_name="tgt")
    assert out == tmp_path / "data" / "ready" / "_8_2" / "tgt_tgt_src_src"
    files = {n: pd.read_csv(out / f"{n}.csv", header=None) for n in ("train_src", "train_tgt", "train_meta", "test")}
    assert {n: len(f) for n, f in files.items()} == {"train_src": 100, "train_tgt": 90, "train_meta": 40, "test": 10}
    assert files["train_src"][1].between(0, 11).all() and files["train_tgt"][1].between(12, 21).all()
    assert (files["test"][1] - 12).tolist() == task.test["item"].tolist()
    # each meta/test row carries the user's source items rated above 3, in the source file's order
    src = files["train_src"]
    for _, row in files["test"].iterrows():
        liked = src[(src[0] == row[0]) & (src[2] > 3)][1].tolist()
        assert ast.literal_eval(row[3]) == liked
    config = (tmp_path / "config.json").read_text()
    assert '"uid": 30' in config and '"iid": 22' in config and '"src": "src"' in config


def test_parse_log_reads_every_phase_and_both_selections() -> None:
    log = "\n".join([
        "=========TgtOnly========", "MAE: 3.0 RMSE: 4.0", "MAE: 2.5 RMSE: 4.5",
        "=========DataAug========", "MAE: 1.0 RMSE: 1.5",
        "=====CDR Pretraining=====", "Training Epoch 1:",
        "==========EMCDR==========", "MAE: 0.9 RMSE: 1.2", "MAE: 0.95 RMSE: 1.1",
        "==========PTUPCDR==========", "MAE: 0.8 RMSE: 1.0", "MAE: 0.85 RMSE: 1.05", "{'tgt_mae': 2.5}",
    ])
    curves = parse_log(log)
    assert curves["tgt"].best_test() == (2.5, 4.0) and curves["tgt"].last() == (2.5, 4.5)
    assert curves["cmf"].mae == (1.0,)
    assert curves["emcdr"].best_test() == (0.9, 1.1) and curves["emcdr"].last() == (0.95, 1.1)
    assert curves["ptupcdr"].best_test() == (0.8, 1.0) and curves["ptupcdr"].last() == (0.85, 1.05)


def test_split_counts_follow_recboles_rule() -> None:
    # RecBole 1.2.1's Dataset._calcu_split_ids gives these for ratios [0.8, 0.1, 0.1]
    assert split_counts(10) == [8, 1, 1]
    assert split_counts(5) == [3, 1, 1]
    assert split_counts(2) == [1, 0, 1]
    assert split_counts(1) == [1, 0, 0]
    assert split_counts(23) == [19, 2, 2]


def test_ranking_task_partitions_each_users_interactions_and_recbole_files_hold_them(tmp_path: Path) -> None:
    _, target = tiny_domains()
    task = ranking_task(target, n_users=30, seed=3, min_rating=None)
    assert task.n_items == 10
    assert (len(task.train), len(task.valid), len(task.test)) == (20 * 3, 20, 20)  # 5 each: [3, 1, 1]
    joined = pd.concat([task.train, task.valid, task.test])
    assert not joined.duplicated().any() and len(joined) == 100
    out = write_recbole(task, tmp_path, name="d")
    lines = {p: (out / f"d.{p}.inter").read_text().splitlines() for p in ("train", "valid", "test")}
    assert lines["train"][0] == "user_id:token\titem_id:token"
    assert [len(v) - 1 for v in lines.values()] == [60, 20, 20]
    assert ranking_task(target, n_users=30, seed=3, min_rating=None).test.equals(task.test)
    liked = ranking_task(target, n_users=30, seed=3)
    assert len(liked.train) + len(liked.valid) + len(liked.test) == int((target["rating"] >= 4).sum())


def test_rating_split_gives_crossbench_exactly_the_references_training_data() -> None:
    task = tiny_task()
    split = rating_split(task, source_name="src", target_name="tgt")
    tgt = split.train.domain("tgt").interactions
    assert len(tgt) == 90 and not set(tgt["user"]) & set(task.test_users)
    assert tgt["rating"].tolist() == task.target_train["rating"].astype(float).tolist()
    assert len(split.train.domain("src").interactions) == 100 and split.valid.n_users == 0


@pytest.mark.parametrize("name", ["emcdr", "ptupcdr", "cmf"])
def test_crossbench_rating_models_give_one_test_point_per_epoch_and_the_last_is_the_fitted_model(name: str) -> None:
    task = tiny_task()
    split = rating_split(task, source_name="src", target_name="tgt")
    model = fidelity.crossbench_rating_model(name, epochs=3, lr=0.01, alpha=0.5)
    curve = fit_rating_model(model, split, task, seed=0)
    assert len(curve.mae) == len(curve.rmse) == 3 and curve.threads == 1
    users = torch.as_tensor(task.test["user"].to_numpy().copy())
    items = torch.as_tensor(task.test["item"].to_numpy().copy())
    assert curve.last() == pytest.approx(mae_rmse(model.predict(users, items), task.test["rating"].to_numpy()))
    assert all(math.isfinite(v) for v in curve.mae) and curve.best_test()[0] == min(curve.mae)


def test_epoch_probe_measures_between_epochs_only() -> None:
    seen: list[int] = []
    probe = EpochProbe(lambda m, b, g: torch.tensor(float(len(seen))), batches_per_epoch=3, measure=lambda: seen.append(1))
    for _ in range(7):  # three epochs of three batches, the last cut short
        probe(None, None, None)  # type: ignore[arg-type]
    assert len(seen) == 2


def test_ranking_metrics_match_a_hand_computation() -> None:
    scores = np.array([[0.9, 0.8, 0.7, 0.6, 0.5], [0.1, 0.2, 0.3, 0.4, 0.5]])
    exclude = GroundTruth.from_pairs(np.array([0]), np.array([0]))  # user 0 trained on item 0
    truth = GroundTruth.from_pairs(np.array([0, 0, 1]), np.array([2, 4, 0]))
    m = ranking_metrics(scores, exclude=exclude, truth=truth, ks=[2])
    # user 0 ranks 1, 2, 3, 4: one hit (item 2) at rank 2; user 1 ranks 4, 3: no hit
    assert m["recall@2"] == pytest.approx((1 / 2 + 0) / 2)
    assert m["mrr@2"] == pytest.approx((1 / 2 + 0) / 2)
    assert m["ndcg@2"] == pytest.approx(((1 / math.log2(3)) / (1 + 1 / math.log2(3)) + 0) / 2)
    assert m["hit@2"] == 0.5 and m["precision@2"] == pytest.approx(0.25)


def test_crossbench_lightgcn_on_recboles_split() -> None:
    from crossbench_cdr.lightgcn import LightGCN

    _, target = tiny_domains(n_target_items=40)
    task = ranking_task(target, n_users=30, seed=0, min_rating=None)
    assert task.n_items == target["item"].nunique() and task.train["item"].max() < task.n_items
    metrics, seconds, report = fit_ranking_model(LightGCN(graph="target", dim=8, layers=2, epochs=2, patience=2), task, name="d", seed=0)
    assert set(metrics) == {f"{m}@{k}" for m in ("recall", "mrr", "ndcg", "hit", "precision") for k in (10, 20)}
    assert 0.0 <= metrics["ndcg@10"] <= 1.0 and 0.0 < metrics["hit@20"] <= 1.0
    assert report.epochs == 2 and seconds > 0


def cdr_tiny(tmp_path: Path, model: str):  # noqa: ANN201
    source, target = tiny_domains(n_target_items=40)
    task = ranking_task(target, n_users=30, seed=0, min_rating=None)
    liked = source[["user", "item"]]
    config = write_recbole_cdr(task, liked, tmp_path, source_name="s", target_name="t", model=model, seed=0, epochs=2)
    return task, liked, config


def test_write_recbole_cdr_prefixes_items_per_domain_and_keeps_the_target_split(tmp_path: Path) -> None:
    task, liked, config = cdr_tiny(tmp_path, "sscdr")
    source_lines = (tmp_path / "s" / "s.inter").read_text().splitlines()
    assert len(source_lines) == 1 + 100 and source_lines[1].startswith("u0\ts")
    target = {p: (tmp_path / "t" / f"t.{p}.inter").read_text().splitlines() for p in ("train", "valid", "test")}
    assert [len(v) - 1 for v in target.values()] == [len(task.train), len(task.valid), len(task.test)]
    assert all(line.split("\t")[1].startswith("t") for line in target["test"][1:])
    text = config.read_text()
    assert 'train_epochs: ["SOURCE:2", "TARGET:2", "OVERLAP:2"]' in text and "benchmark_filename: [train, valid, test]" in text


@pytest.mark.parametrize("name", ["conet", "bitgcf", "sscdr", "dtcdr"])
def test_crossbench_cdr_models_fit_on_the_same_two_domains(tmp_path: Path, name: str) -> None:
    task, liked, _ = cdr_tiny(tmp_path, name)
    metrics, _, report = fit_ranking_model(crossbench_cdr_model(name, epochs=2), task, name="t", seed=0, source=liked, ks=[10])
    assert set(metrics) == {f"{m}@10" for m in ("recall", "mrr", "ndcg", "hit", "precision")}
    assert 0.0 <= metrics["recall@10"] <= 1.0 and report.epochs >= 2


@pytest.mark.skipif(not (RECBOLE_CDR_REF and RECBOLE_CDR_PYTHON), reason="set CROSSBENCH_RECBOLE_CDR_REF and CROSSBENCH_RECBOLE_CDR_PYTHON")
@pytest.mark.slow
def test_recbole_cdr_reads_the_converted_split(tmp_path: Path) -> None:
    _, _, config = cdr_tiny(tmp_path, "conet")
    metrics, _ = run_recbole_cdr(checkout=Path(RECBOLE_CDR_REF), python=Path(RECBOLE_CDR_PYTHON), config=config, model="conet", threads=1)
    assert set(metrics) == {f"{m}@10" for m in ("recall", "mrr", "ndcg", "hit", "precision")}


def test_spread_and_verdict() -> None:
    ref = Spread.of([1.0, 1.2, 1.1])
    assert ref.mean == pytest.approx(1.1) and ref.std == pytest.approx(0.1)
    assert verdict(Spread.of([1.25, 1.3, 1.2]), ref, lower_better=True).startswith("within spread")
    assert verdict(Spread.of([0.8]), ref, lower_better=True).startswith("better")
    assert verdict(Spread.of([0.8]), ref, lower_better=False).startswith("worse")
    rows = summarise([Result("m", "reference", "MAE", s, v, True) for s, v in enumerate([1.0, 1.2, 1.1])])
    assert "verdict" not in rows[0] and rows[0]["reference"] == ref


def test_cli_skips_models_without_a_reference_and_refuses_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    assert fidelity.main(["--seeds", "0"]) == 0
    out = capsys.readouterr().out
    assert "skipped emcdr, ptupcdr, cmf: no --ptupcdr-ref" in out and "skipped lightgcn: no --recbole-python" in out
    assert "skipped conet, bitgcf, sscdr, dtcdr: no --recbole-cdr-ref" in out and "skipped gru4rec: no --recbole-python" in out
    with pytest.raises(SystemExit) as stop:
        fidelity.main(["--ptupcdr-ref", "/nonexistent"])
    assert stop.value.code == 2
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        fidelity.main(["--models", "cdrib", "--cdrib-epochs", "5", "--seeds", "0"])
    assert stop.value.code == 2
    assert capsys.readouterr().err.strip() == (
        "fidelity.py: --cdrib-epochs 5: CDRIB's reference validates at epochs 10, 15, ...; give at least 10")


@pytest.mark.skipif(not (PTUPCDR_REF and PTUPCDR_PYTHON), reason="set CROSSBENCH_PTUPCDR_REF and CROSSBENCH_PTUPCDR_PYTHON")
@pytest.mark.slow
def test_the_ptupcdr_reference_runs_on_the_converted_data(tmp_path: Path) -> None:
    task = tiny_task()
    write_ptupcdr(task, tmp_path, source_name="src", target_name="tgt")
    curves, _, _ = run_reference(checkout=Path(PTUPCDR_REF), python=Path(PTUPCDR_PYTHON), workdir=tmp_path, seed=0, epochs=2, lr=0.01)
    assert {k: len(c.mae) for k, c in curves.items()} == {"tgt": 2, "cmf": 2, "emcdr": 2, "ptupcdr": 2}


@pytest.mark.skipif(not RECBOLE_PYTHON, reason="set CROSSBENCH_RECBOLE_PYTHON to a python with recbole==1.2.1")
@pytest.mark.slow
def test_recbole_reads_the_converted_split(tmp_path: Path) -> None:
    from fidelity_recbole import run_recbole

    _, target = tiny_domains(n_target_items=40)
    task = ranking_task(target, n_users=30, seed=0, min_rating=None)
    write_recbole(task, tmp_path, name="d")
    metrics, _ = run_recbole(python=Path(RECBOLE_PYTHON), data=tmp_path, dataset="d", model="lightgcn", seed=0, threads=1,
                             workdir=tmp_path / "run")
    assert 0.0 <= metrics["ndcg@10"] <= 1.0 and 0.0 < metrics["hit@20"] <= 1.0


def hand_sequences() -> pd.DataFrame:
    """User 0: items 7, 3, 5 (time 1, 2, 2: a tie, by item), 9, 4 and a 2-star 8; user 1: four items only; user 2: five."""
    rows = [(0, 7, 5, 1), (0, 5, 4, 2), (0, 3, 5, 2), (0, 9, 4, 3), (0, 8, 2, 4), (0, 4, 5, 5),
            (1, 1, 5, 1), (1, 2, 5, 2), (1, 3, 5, 3), (1, 4, 5, 4),
            (2, 9, 5, 9), (2, 8, 5, 8), (2, 7, 5, 7), (2, 6, 5, 6), (2, 5, 5, 5)]
    return pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp"])


def test_sequence_task_leaves_the_last_two_items_out_by_time_and_recbole_gets_one_timed_file(tmp_path: Path) -> None:
    task = sequence_task(hand_sequences(), n_users=3)
    kept = [3, 4, 5, 6, 7, 8, 9]  # ratings >= 4 of users 0 and 2 (user 1 has 4 items, fewer than 5); renumbered 0..6
    assert task.n_items == len(kept)
    order = {u: [kept[i] for i in task.frame[task.frame["user"] == u]["item"]] for u in (0, 1, 2)}
    assert order == {0: [7, 3, 5, 9, 4], 1: [], 2: [5, 6, 7, 8, 9]}  # the tie at time 2 broken by item: 3 before 5
    assert [kept[i] for i in task.test["item"]] == [4, 9] and [kept[i] for i in task.valid["item"]] == [9, 8]
    assert task.frame["timestamp"].is_unique and len(task.train) == 3 + 3
    history = history_before_test(task)
    assert history.shape == (3, 50) and (history[1] == -1).all()
    assert [kept[i] for i in history[0][history[0] >= 0].tolist()] == [7, 3, 5, 9]  # the validation item included
    folder = write_recbole_sequence(task, tmp_path, name="d")
    lines = (folder / "d.inter").read_text().splitlines()
    assert lines[0] == "user_id:token\titem_id:token\ttimestamp:float" and len(lines) == 1 + 10


def test_crossbench_gru4rec_on_recboles_sequential_split() -> None:
    from crossbench_cdr.gru4rec import Gru4Rec

    rng = np.random.default_rng(0)
    rows = [(u, int(i), 5, t) for u in range(30) for t, i in enumerate(rng.choice(40, 8, replace=False))]
    task = sequence_task(pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp"]), n_users=30)
    metrics, seconds, report = fit_sequence_model(Gru4Rec(dim=8, hidden=8, epochs=2, batch_size=64), task, name="d", seed=0)
    assert set(metrics) == {f"{m}@{k}" for m in ("recall", "mrr", "ndcg", "hit", "precision") for k in (10, 20)}
    assert 0.0 <= metrics["ndcg@10"] <= metrics["recall@10"] == metrics["hit@10"] <= 1.0  # one test item per user
    assert report.epochs == 2 and seconds > 0


@pytest.mark.skipif(not RECBOLE_PYTHON, reason="set CROSSBENCH_RECBOLE_PYTHON to a python with recbole==1.2.1")
@pytest.mark.slow
def test_recbole_splits_the_sequence_file_itself(tmp_path: Path) -> None:
    from fidelity_recbole import run_recbole

    rng = np.random.default_rng(0)
    rows = [(u, int(i), 5, t) for u in range(30) for t, i in enumerate(rng.choice(40, 8, replace=False))]
    task = sequence_task(pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp"]), n_users=30)
    folder = write_recbole_sequence(task, tmp_path, name="d").parent
    metrics, _ = run_recbole(python=Path(RECBOLE_PYTHON), data=folder, dataset="d", model="gru4rec", seed=0, threads=1,
                             workdir=tmp_path / "run", epochs=1)
    assert 0.0 <= metrics["ndcg@10"] <= metrics["recall@10"] <= 1.0
