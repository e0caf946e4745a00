"""`crossbench data stats` on fixture files, and the cold-start benchmark end to end on real formats."""

from __future__ import annotations

import json
import types
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from crossbench.cli.data import data_group
from crossbench.data.audit import audit_split
from crossbench.data.protocols import train_items
from crossbench.evaluate.ranking import evaluate
from crossbench.plugin.build import make_protocol
from crossbench.plugin.interfaces import RunEnv
from crossbench.plugin.manager import get_plugin_manager
from crossbench.plugin.registry import Registry


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry(get_plugin_manager())


def write_recbole(root: Path) -> Path:
    rows = {
        "books": ["u1\tb1\t1", "u1\tb2\t2", "u2\tb1\t3", "u3\tb3\t4", "u5\tb2\t5"],
        "movies": ["u1\tm1\t10", "u2\tm2\t11", "u4\tm1\t12", "u5\tm2\t13", "u5\tm1\t14"],
    }
    for d, lines in rows.items():
        (root / d).mkdir(parents=True)
        (root / d / f"{d}.inter").write_text("user_id:token\titem_id:token\ttimestamp:float\n" + "\n".join(lines) + "\n")
    return root


def invoke(registry: Registry, *args: str):
    return CliRunner().invoke(data_group, list(args), obj=types.SimpleNamespace(registry=registry))


def test_stats_json_hand_computed(tmp_path: Path, registry: Registry) -> None:
    root = write_recbole(tmp_path)
    result = invoke(registry, "stats", "recbole", "--dataset-param", f"path={root}",
                    "--dataset-param", 'domains=["books", "movies"]', "--json", "--target", "movies")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["users"] == 5
    assert out["domains"] == [
        {"domain": "books", "users": 4, "items": 3, "interactions": 5, "density": pytest.approx(5 / 12)},
        {"domain": "movies", "users": 4, "items": 2, "interactions": 5, "density": pytest.approx(5 / 8)},
    ]
    assert out["overlap"] == [{"domains": "books & movies", "overlap users": 3, "share of books": 0.75, "share of movies": 0.75}]
    cold = [(r["protocol"], r["cold users"], r["test users"], r["valid users"]) for r in out["protocols"]]
    # 3 overlapping users: 20% -> 1 test user, 50% -> round(1.5) = 2, 80% -> round(2.4) = 2; 10% validation -> 0
    assert cold[:3] == [("cold-start 20%", 1, 1, 0), ("cold-start 50%", 2, 2, 0), ("cold-start 80%", 2, 2, 0)]
    assert [s["step"] for s in out["preprocessing"]][0] == "read"


def test_stats_table_with_one_protocol(tmp_path: Path, registry: Registry) -> None:
    root = write_recbole(tmp_path)
    result = invoke(registry, "stats", "recbole", "--dataset-param", f"path={root}", "--dataset-param", "domains=books,movies",
                    "--protocol", "warm", "--protocol-param", "cut_time=13", "--target", "movies")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    row = next(line for line in lines if line.startswith("movies") and "warm" in line)
    # cut 13: u5 has m2@13 and m1@14 after the cut but no target history before it; u1, u2, u4 have no later item
    assert "warm" in row and "no user of 'movies'" in row
    assert any(line.startswith("books") and "0.416667" in line for line in lines)


def test_stats_errors_are_clear(tmp_path: Path, registry: Registry) -> None:
    root = write_recbole(tmp_path)
    result = invoke(registry, "stats", "recbole", "--dataset-param", f"path={root}", "--dataset-param", "domain=books")
    assert result.exit_code == 2 and "has no hyperparameter 'domain'; did you mean 'domains'" in result.output
    result = invoke(registry, "stats", "recbole", "--dataset-param", f"path={root}", "--dataset-param", "domains=books,movies",
                    "--target", "film")
    assert result.exit_code == 2 and "unknown domain" in result.output
    result = invoke(registry, "stats", "recbole", "--dataset-param", f"path={root}", "--dataset-param", "domains=books,movies",
                    "--protocol", "holdout")
    assert result.exit_code == 2 and "unknown protocol 'holdout'" in result.output


def write_all_formats(root: Path, n_users: int = 60) -> dict[str, dict[str, object]]:
    """The same random interactions in four real formats; returns each dataset's parameters.

    Ids have a fixed width in every format so that sorted raw ids give the same order everywhere.
    """
    rng = np.random.default_rng(5)
    rows = []  # (domain, user, item, rating, time)
    for u in range(n_users):
        for d, n in (("A", 8), ("B", 6)):
            if d == "B" and u % 5 == 0:
                continue
            for i in rng.choice(25, n, replace=False):
                rows.append((d, u, int(i), int(rng.integers(1, 6)), 1_400_000_000 + int(rng.integers(0, 10**7))))
    # RecBole
    for d in ("A", "B"):
        (root / "rb" / d).mkdir(parents=True)
        body = "".join(f"user{u:03d}\t{d}{i:02d}\t{r}\t{t}\n" for dd, u, i, r, t in rows if dd == d)
        (root / "rb" / d / f"{d}.inter").write_text("user_id:token\titem_id:token\trating:float\ttimestamp:float\n" + body)
    # MovieLens 1M: A = Comedy, B = Drama (movie ids 100-124 Comedy, 200-224 Drama)
    (root / "ml").mkdir()
    (root / "ml" / "movies.dat").write_text(
        "".join(f"{i + 100}::Comedy {i} (1990)::Comedy\n{i + 200}::Drama {i} (1991)::Drama\n" for i in range(25))
    )
    (root / "ml" / "ratings.dat").write_text(
        "".join(f"{u + 100}::{i + (100 if d == 'A' else 200)}::{r}::{t}\n" for d, u, i, r, t in rows)
    )
    # Amazon 2018 ratings-only CSV
    (root / "amz").mkdir()
    for d, cat in (("A", "Books"), ("B", "Movies_and_TV")):
        body = "".join(f"{d}{i:04d},U{u:03d},{r}.0,{t}\n" for dd, u, i, r, t in rows if dd == d)
        (root / "amz" / f"{cat}.csv").write_text(body)
    # Douban
    (root / "db").mkdir()
    for d, dom in (("A", "book"), ("B", "movie")):
        body = "".join(f"{u + 100}\t{i + 10}\t{r}\ttag\tok\t{t}\t0\n" for dd, u, i, r, t in rows if dd == d)
        (root / "db" / f"{dom}reviews_cleaned.txt").write_text(f"user_id\t{dom}_id\trating\tlabels\tcomment\ttime\tID\n" + body)
    return {
        "recbole": {"path": str(root / "rb"), "domains": "A,B"},
        "movielens": {"path": str(root / "ml"), "domains": ["Comedy", "Drama"]},
        "amazon2018": {"path": str(root / "amz")},
        "douban": {"path": str(root / "db")},
    }


def test_cold_start_benchmark_on_every_real_format(tmp_path: Path, registry: Registry) -> None:
    datasets = write_all_formats(tmp_path)
    env = RunEnv(registry=registry, progress=False)
    metric = registry.metrics(["recall"])
    results = {}
    fingerprints = set()
    for name, params in datasets.items():
        data = registry.get("datasets", name).factory(**params, min_rating=3).load()
        target = str(data.meta["default_target"])
        split = make_protocol(registry, "cold-start", target=target, seed=0, test_fraction=0.5).split(data)
        audit_split(split)
        model = registry.get("recommenders", "popularity").factory()
        model.fit(split, env=env)
        n_items = split.train.domain(target).n_items
        res = evaluate(model.score, split.test, n_items=n_items, metrics=metric, ks=[10],
                       exclude=train_items(split.train, target))
        results[name] = res.means["recall@10"]
        fingerprints.add(split.fingerprint())
        assert split.test.n_users == round(0.5 * len(data.overlap(data.domain_names[0], target)))
    # the same interactions in four formats: the same numbers (ids differ, so fingerprints differ)
    assert len(set(np.round(list(results.values()), 12))) == 1, results
    assert len(fingerprints) == 4
    assert 0 < next(iter(results.values())) < 1
