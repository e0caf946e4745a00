"""Published leaderboards are exactly what their run records generate."""

from __future__ import annotations

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
