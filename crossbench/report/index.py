"""The index of published tables: ``leaderboards/README.md``, generated from the tables' run records.

``crossbench leaderboard index leaderboards`` writes it; with ``--check`` it fails when the
file differs from what the records give (the test suite runs the check).
"""

from __future__ import annotations

from pathlib import Path

from crossbench.errors import CrossbenchError
from crossbench.records.sources import read_sources
from crossbench.records.store import load_records
from crossbench.report.exports import table_data
from crossbench.report.leaderboard import md_cell
from crossbench.report.notes import read_tuning


def _tuned(records: list[dict]) -> str:
    studies = [read_tuning(r["model"].get("tuning")) for r in records]
    budgets = sorted({t.budget for t in studies if t is not None})
    if not budgets:
        return "defaults (not tuned)"
    untuned = " (models without a search space: defaults)" if any(t is None for t in studies) else ""
    return f"per split on validation users, {' / '.join(budgets)} per model{untuned}"


def render_index(root: Path) -> str:
    """Markdown listing every ``ROOT/*/leaderboard.md`` with what it measures and its files."""
    lines = [
        "# Published leaderboards",
        "",
        "Each folder holds a table generated from the run records beside it (`runs/`), with the same",
        "numbers as CSV and JSON and plots of every metric over K and by user group.",
        "`crossbench verify FOLDER` recomputes every number from the per-user files;",
        "`crossbench reproduce FOLDER/runs/RECORD.json` reruns one row.",
        "",
        "| table | dataset → target (protocol) | models | seeds | best on the primary metric | how rows were tuned | files |",
        "|---|---|---|---|---|---|---|",
    ]
    boards = sorted(p.parent for p in root.glob("*/leaderboard.md"))
    if not boards:
        raise CrossbenchError(f"{root}: no */leaderboard.md to index")
    combined = [b for b in boards if not (b / "runs").is_dir() and read_sources(b) is not None]
    for board in (b for b in boards if b not in combined):
        records = load_records([board])
        for section in table_data(records):
            primary = section["primary"]
            best = section["models"][0]
            value = best["metrics"][primary]["mean"] if primary else float("nan")
            seeds = sorted({s for m in section["models"] for s in m["seeds"]})
            name = board.name
            files = f"[csv]({name}/leaderboard.csv), [json]({name}/leaderboard.json), [pairwise]({name}/pairwise.md), [plots]({name}/plots)"
            lines.append(
                f"| [{name}]({name}/leaderboard.md) | {md_cell(section['dataset'])} → {md_cell(section['target'])} "
                f"({md_cell(section['protocol'])}) | "
                f"{len(section['models'])} | {', '.join(map(str, seeds))} | {md_cell(best['model'])}: {md_cell(primary)} {value:.4f} | "
                f"{_tuned([r for r in records if r['protocol']['target'] == section['target']])} | {files} |"
            )
    return "\n".join(lines + _combined(combined)) + "\n"


def _combined(boards: list[Path]) -> list[str]:
    """Tables built from other folders' records (their ``sources.json``), with their agreement reports."""
    from crossbench.report.agreement import agreements

    if not boards:
        return []
    lines = ["", "Tables built from the records of other folders (`sources.json` names them; `crossbench verify FOLDER`",
             "checks them against those records), with the agreement between a paper protocol's order and full ranking's:", "",
             "| table | built from | agreement (Kendall's tau-b, pairs that flip) |", "|---|---|---|"]
    for board in boards:
        sources = read_sources(board) or []
        found = agreements(load_records(sources))
        said = "; ".join(f"{a.paper.split(',', 1)[0]} against {a.full}: {a.tau:.3f} over {len(a.rows)} models, {len(a.flips)} flips"
                         for a in found) or "none"
        lines.append(f"| [{board.name}]({board.name}/leaderboard.md) | {', '.join(p.name for p in sources)} | {md_cell(said)} |")
    return lines
