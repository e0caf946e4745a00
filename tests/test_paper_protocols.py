"""Paper protocols: leave-one-out on overlapping users, the papers' sampled negatives (loo-999, loo-100),
users not shared across domains, and a target per domain pair in multi-domain data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from crossbench.cli import cli
from crossbench.cli.common import CliState
from crossbench.data.audit import audit_split
from crossbench.data.model import CrossDomainData
from crossbench.data.protocols import GroundTruth, Split, resolve_targets
from crossbench.errors import CrossbenchError
from crossbench.evaluate.sampled import draw_negatives, protocol_negatives
from crossbench_protocols import ColdStart, LeaveOneOut, Loo100, Loo999

TINY = ["--dataset", "synthetic", "--dataset-param", "n_users=120", "--dataset-param", "n_items=1500", "--seeds", "0",
        "--model", "popularity", "--model", "itemknn", "--threads", "1", "-q"]


def invoke(args: list[str]):
    return CliRunner().invoke(cli, args, obj=CliState())


def _frame(rows: list[tuple[str, str, str, int]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["domain", "user", "item", "timestamp"])


def _hand_data() -> CrossDomainData:
    rows = [("src", u, "s1", 0) for u in ("a", "b", "b2", "d", "e")]
    rows += [("tgt", "a", f"t{k}", k) for k in (1, 2, 3, 4)]  # test t4, validation t3
    rows += [("tgt", "b", "t2", 5), ("tgt", "b", "t1", 6), ("tgt", "b", "t2", 7)]  # 2 distinct items: not held out
    rows += [("tgt", "b2", "t1", 1), ("tgt", "b2", "t3", 2), ("tgt", "b2", "t2", 3), ("tgt", "b2", "t1", 9)]  # t1 again, last
    rows += [("tgt", "c", f"t{k}", k) for k in (1, 2, 3, 4)]  # target only: not shared with the source
    rows += [("tgt", "e", f"t{k}", 3) for k in (5, 6, 7)]  # one time: ties broken by item, t7 last
    return CrossDomainData.from_frames("hand", _frame(rows))


def _pairs(data: CrossDomainData, truth: GroundTruth, domain: str) -> set[tuple[str, str]]:
    ids = data.domain(domain).items["item_id"].to_numpy()
    users = np.repeat(truth.users, np.diff(truth.indptr))
    return {(str(data.user_ids[u]), str(ids[i])) for u, i in zip(users, truth.items)}


def _train_pairs(split: Split) -> set[tuple[str, str]]:
    inter = split.train.domain(split.target).interactions
    ids = split.train.domain(split.target).items["item_id"].to_numpy()
    return {(str(split.train.user_ids[u]), str(ids[i])) for u, i in zip(inter["user"], inter["item"])}


def test_leave_one_out_holds_out_the_last_two_items_of_overlapping_users() -> None:
    data = _hand_data()
    split = LeaveOneOut(target="tgt").split(data)
    assert _pairs(data, split.test, "tgt") == {("a", "t4"), ("b2", "t1"), ("e", "t7")}
    assert _pairs(data, split.valid, "tgt") == {("a", "t3"), ("b2", "t2"), ("e", "t6")}
    assert _train_pairs(split) == {("a", "t1"), ("a", "t2"), ("b", "t1"), ("b", "t2"), ("b2", "t3"), ("e", "t5"),
                                   *{("c", f"t{k}") for k in (1, 2, 3, 4)}}  # b2's earlier t1 leaves too; c stays
    report = audit_split(split)
    assert report.users == {"shared": 4, "target_only": 1, "source_only": 1}  # a, b, b2, e; c; d
    assert split.evaluation.label == "full ranking"
    everyone = LeaveOneOut(target="tgt", users="all").split(data)
    assert ("c", "t4") in _pairs(data, everyone.test, "tgt")  # users="all": target-only users are tested too
    assert Loo999(target="tgt").split(data).evaluation.label == "sampled: 999 uniform negatives"
    assert Loo100(target="tgt").split(data).evaluation.label == "sampled: 100 uniform negatives"
    with pytest.raises(CrossbenchError, match="min_items must be at least 3"):
        LeaveOneOut(target="tgt", min_items=2)


def _many_items_data(n_users: int = 40, n_items: int = 1200) -> CrossDomainData:
    rng = np.random.default_rng(7)
    rows = []
    for u in range(n_users):
        rows += [("src", f"u{u}", f"s{i}", 0) for i in rng.choice(30, size=3, replace=False)]
        rows += [("tgt", f"u{u}", f"t{i}", t) for t, i in enumerate(rng.choice(n_items, size=int(rng.integers(3, 40)), replace=False))]
    catalogue = pd.DataFrame({"domain": "tgt", "item": [f"t{i}" for i in range(n_items)]})
    return CrossDomainData.from_frames("many", _frame(rows), catalogue)


def test_sampled_negatives_are_fixed_per_seed_and_never_a_positive() -> None:
    data = _many_items_data()
    split = Loo999(target="tgt").split(data)
    sample = protocol_negatives(split, seed=3)
    assert sample.items.shape == (split.test.n_users, 999) and sample.strategy == "uniform" and sample.replacement
    assert sample.describe()["replacement"] is True
    again = protocol_negatives(Loo999(target="tgt", seed=3).split(data), seed=3)  # a new split object, same seed
    assert np.array_equal(sample.items, again.items) and sample.sha256 == again.sha256
    assert not np.array_equal(sample.items, protocol_negatives(split, seed=4).items)
    inter = data.domain("tgt").interactions
    for j, u in enumerate(split.test.users):
        negatives = sample.items[j]
        touched = set(inter["item"][inter["user"] == u].tolist())  # training, validation and test positives alike
        assert touched and not touched & set(negatives.tolist())
    with pytest.raises(CrossbenchError, match="evaluates by full ranking, not by sampled negatives"):
        protocol_negatives(LeaveOneOut(target="tgt").split(data), seed=0)


@pytest.mark.parametrize("replacement", [True, False])
def test_uniform_negatives_cover_the_allowed_items_evenly(replacement: bool) -> None:
    # 3000 users, each with items 0-2 as positives among 50: 10 negatives drawn from 47 items each
    users = np.arange(3000)
    truth = GroundTruth.from_pairs(users, np.zeros(3000, np.int64))
    seen = GroundTruth.from_pairs(np.repeat(users, 2), np.tile([1, 2], 3000))
    sample = draw_negatives(truth, n_items=50, n_negatives=10, exclude=seen, seed=0, replacement=replacement)
    counts = np.bincount(sample.items.ravel(), minlength=50)
    assert counts[:3].tolist() == [0, 0, 0]
    expected = 3000 * 10 / 47  # 638.3 per item
    assert np.abs(counts[3:] - expected).max() < 0.15 * expected
    repeats = np.mean([len(np.unique(row)) < 10 for row in sample.items])
    # without replacement never; with it, 1 - prod_{k<10}(1 - k/47) = 0.64 of the users draw an item twice
    assert repeats == 0 if not replacement else abs(repeats - 0.64) < 0.05


def test_paper_negatives_fit_a_catalogue_smaller_than_their_count() -> None:
    data = _many_items_data(n_users=12, n_items=60)  # 60 target items, 999 negatives: drawn with replacement
    split = Loo999(target="tgt").split(data)
    sample = protocol_negatives(split, seed=0)
    inter = data.domain("tgt").interactions
    for j, u in enumerate(split.test.users):
        touched = set(inter["item"][inter["user"] == u].tolist())
        assert set(sample.items[j].tolist()) == set(range(60)) - touched  # every allowed item drawn, nothing else


def _run_loo_999(paper: Path) -> None:
    out = invoke(["run", *TINY, "--protocol", "loo-999", "--output", str(paper)])
    assert out.exit_code == 0, out.output
    records = [json.loads(f.read_text()) for f in sorted((paper / "runs").glob("*-seed0.json"))]
    assert len(records) == 2
    # the same negatives for every model of the seed
    assert {r["evaluation"]["sampling"]["sha256"] for r in records} != {""}
    assert len({r["evaluation"]["sampling"]["sha256"] for r in records}) == 1
    for r in records:
        assert r["protocol"]["name"] == "loo-999" and r["protocol"]["evaluation"] == "sampled: 999 uniform negatives"
        assert r["evaluation"]["sampling"]["n_negatives"] == 999 and r["evaluation"]["primary"] == "ndcg@10:sampled-uniform-999"
    assert "(loo-999, sampled: 999 uniform negatives)" in (paper / "leaderboard.md").read_text()
    csv = (paper / "leaderboard.csv").read_text()
    assert "loo-999, sampled: 999 uniform negatives" in csv.splitlines()[1]
    assert all("loo-999-sampled-999-uniform-negatives" in p.name for p in (paper / "plots").glob("*.png"))


def test_loo_999_end_to_end(tmp_path: Path) -> None:
    _run_loo_999(tmp_path / "paper")


@pytest.mark.slow
def test_loo_999_beside_full_ranking_gives_the_agreement_report(tmp_path: Path) -> None:
    paper, full = tmp_path / "paper", tmp_path / "full"
    _run_loo_999(paper)
    again = invoke(["reproduce", str(paper / "runs" / "movies-popularity-seed0.json")])  # same split, same negatives
    assert again.exit_code == 0 and "bit-identical" in again.output, again.output
    assert invoke(["run", *TINY, "--protocol", "loo", "--output", str(full)]).exit_code == 0
    board = invoke(["leaderboard", str(paper), str(full)])
    assert board.exit_code == 0, board.output
    assert "## Agreement: synthetic → movies: loo-999, sampled: 999 uniform negatives" in board.output
    assert "against loo (full ranking)" in board.output and "Kendall's tau-b between the two orders:" in board.output


def test_sampled_option_does_not_change_a_paper_protocol(tmp_path: Path) -> None:
    out = invoke(["run", *TINY, "--protocol", "loo-999", "--sampled", "100", "--output", str(tmp_path / "r")])
    assert out.exit_code == 2
    assert [ln for ln in out.output.splitlines() if ln.strip()] == [
        "crossbench: error: protocol 'loo-999' evaluates by sampled: 999 uniform negatives; sampled_negatives (--sampled) 100 "
        "does not apply to it: drop it"
    ]
    assert not (tmp_path / "r").exists()


def _three_domain_csv(path: Path) -> None:
    """Users p* act in a and c, q* in b and c, r* in a, b and c, s* in c only, t* in a only."""
    rows = []
    for group, doms in (("p", "ac"), ("q", "bc"), ("r", "abc"), ("s", "c"), ("t", "a")):
        for k in range(4):
            for d in doms:
                rows += [(d, f"{group}{k}", f"{d}{(k + j) % 5}", j) for j in range(3)]
    _frame(rows).to_csv(path, index=False)


def test_users_not_shared_and_a_target_per_domain_pair(tmp_path: Path) -> None:
    _three_domain_csv(tmp_path / "inter.csv")
    from crossbench_datasets import tabular

    data = tabular(path=str(tmp_path / "inter.csv")).load()
    assert resolve_targets(data, ["a>c", "b>c"]) == ["a>c", "b>c"]
    with pytest.raises(CrossbenchError, match="unknown domain"):
        resolve_targets(data, ["x>c"])
    # a>c: p, r shared; q, s in c only; t in a only. b>c: q, r shared; p, s in c only; no user in b only
    for pair, shared, users in (("a>c", "pr", (8, 8, 4)), ("b>c", "qr", (8, 8, 0))):
        split = ColdStart(target=pair, test_fraction=0.5, valid_fraction=0.25, seed=1).split(data)
        assert (split.label, split.target, split.source) == (pair, "c", pair[0])
        assert split.train.domain_names == [pair[0], "c"]  # the pair's two domains only
        held = {str(data.user_ids[u])[0] for u in np.concatenate([split.test.users, split.valid.users])}
        assert held <= set(shared)  # only users the pair shares are cold
        report = audit_split(split)
        assert report.target == pair and "cold-users-have-source" in report.checks
        assert report.users == dict(zip(("shared", "target_only", "source_only"), users))
        loo = LeaveOneOut(target=pair).split(data)
        assert {str(data.user_ids[u])[0] for u in loo.test.users} == set(shared)
    res = tmp_path / "res"
    exp = tmp_path / "pairs.toml"
    exp.write_text(f"""
seeds = [0]
metrics = ["ndcg"]
ks = [3]
[dataset]
name = "tabular"
path = "{tmp_path / 'inter.csv'}"
[protocol]
name = "cold-start"
targets = ["a>c", "b>c"]
test_fraction = 0.5
[[models]]
name = "popularity"
""")
    out = invoke(["run", str(exp), "-q", "--threads", "1", "--output", str(res)])
    assert out.exit_code == 0, out.output
    assert "→ a>c (cold-start)" in out.output and "→ b>c (cold-start)" in out.output
    targets = sorted(json.loads(f.read_text())["protocol"]["target"] for f in (res / "runs").glob("*-seed0.json"))
    assert targets == ["a>c", "b>c"]
    verified = invoke(["verify", str(res)])  # each pair's split is made again from its record and matches
    assert verified.exit_code == 0 and "dataset and split fingerprints agree with the data" in verified.output
