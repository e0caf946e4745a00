"""One reader of per-user files: a table build hashes and loads each file once."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import crossbench.evaluate.peruser as peruser
from crossbench.cli import CliState, cli
from crossbench.errors import CrossbenchError
from crossbench.evaluate.peruser import PerUserFiles, save_per_user
from crossbench.evaluate.ranking import EvalResult
from crossbench.files import file_sha256

ROOT = Path(__file__).resolve().parents[1]


def _result() -> EvalResult:
    per_user = {"ndcg@10": np.array([0.5, np.nan, 1.0]), "recall@10": np.array([0.25, 0.0, 0.75])}
    return EvalResult(users=np.array([3, 7, 9]), per_user=per_user, catalog={"coverage@10": 0.4})


def _count_reads(monkeypatch: pytest.MonkeyPatch) -> tuple[Counter[str], Counter[str]]:
    hashed: Counter[str] = Counter()
    loaded: Counter[str] = Counter()
    real_hash, real_load = peruser.file_sha256, np.load

    def hash_once(path: Path) -> str:
        hashed[Path(path).name] += 1
        return real_hash(path)

    def load_once(path: Path, **kwargs: object) -> object:
        loaded[Path(path).name] += 1
        return real_load(path, **kwargs)

    monkeypatch.setattr(peruser, "file_sha256", hash_once)
    monkeypatch.setattr(peruser.np, "load", load_once)
    return hashed, loaded


def test_a_file_read_three_times_is_hashed_and_loaded_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "run.npz"
    save_per_user(_result(), path)
    digest = file_sha256(path)
    hashed, loaded = _count_reads(monkeypatch)
    files = PerUserFiles()
    first = files.read(path, sha256=digest)
    assert files.read(path, sha256=digest) is first and files.read(path) is first
    assert hashed == {"run.npz": 1} and loaded == {"run.npz": 1}
    # the hand-computed means: NaN left out of ndcg (0.5 + 1.0) / 2, recall (0.25 + 0 + 0.75) / 3
    assert first.means == {"ndcg@10": 0.75, "recall@10": pytest.approx(1 / 3, abs=1e-15), "coverage@10": 0.4}
    with pytest.raises(CrossbenchError, match="sha256 of run.npz does not match"):
        files.read(path, sha256="0" * 64)


def test_a_changed_file_is_refused_on_first_read(tmp_path: Path) -> None:
    path = tmp_path / "run.npz"
    save_per_user(_result(), path)
    with pytest.raises(CrossbenchError, match="record x: the sha256 of run.npz does not match the record"):
        PerUserFiles().read(path, sha256="f" * 64, where="record x")


def test_checking_a_published_table_reads_each_per_user_file_once(monkeypatch: pytest.MonkeyPatch) -> None:
    folder = ROOT / "leaderboards" / "default"
    n_files = len(list((folder / "runs").glob("*.npz")))
    assert n_files > 1
    hashed, loaded = _count_reads(monkeypatch)
    out = CliRunner().invoke(cli, ["leaderboard", str(folder), "--check", str(folder / "leaderboard.md")], obj=CliState())
    assert out.exit_code == 0, out.output
    assert len(hashed) == n_files and set(hashed.values()) == {1}
    assert len(loaded) == n_files and set(loaded.values()) == {1}
