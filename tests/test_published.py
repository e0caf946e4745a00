"""Published leaderboards are exactly what their run records generate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from crossbench.cli import CliState, cli

ROOT = Path(__file__).resolve().parents[1] / "leaderboards"
BOARDS = sorted(p for p in ROOT.glob("*/leaderboard.md"))


def test_there_are_published_boards():
    assert BOARDS, "leaderboards/ holds no published table"


@pytest.mark.parametrize("board", BOARDS, ids=lambda p: p.parent.name)
def test_published_board_matches_its_records(board):
    out = CliRunner().invoke(cli, ["leaderboard", str(board.parent), "--check", str(board)], obj=CliState())
    assert out.exit_code == 0, out.output


def test_the_index_lists_every_published_board():
    out = CliRunner().invoke(cli, ["leaderboard", "index", str(ROOT), "--check"], obj=CliState())
    assert out.exit_code == 0, out.output
    index = (ROOT / "README.md").read_text(encoding="utf-8")
    for board in BOARDS:
        assert f"]({board.parent.name}/leaderboard.md)" in index


@pytest.mark.parametrize("board", BOARDS, ids=lambda p: p.parent.name)
def test_published_board_has_its_exports(board):
    folder = board.parent
    assert (folder / "leaderboard.csv").is_file() and (folder / "leaderboard.json").is_file()
    sections = json.loads((folder / "leaderboard.json").read_text(encoding="utf-8"))["sections"]
    if any("sampled" not in s["protocol"] for s in sections):  # a sampled table has no metric@K curves (its K are fixed)
        assert any((folder / "plots").glob("*-at-k.png"))
    assert any((folder / "plots").glob("*-user-groups.png"))
    # a results folder names its experiment; a table built from other folders names them
    assert (folder / "experiment.json").is_file() or (folder / "sources.json").is_file()
