"""The `leaderboard` command: a table from run records, and (`leaderboard index`) the index of
the published tables."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from crossbench.errors import CrossbenchError
from crossbench.files import write_text_atomic
from crossbench.records.store import load_records


@click.command("index")
@click.argument("root", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--check", is_flag=True, help="Fail if ROOT/README.md differs from the one the records give.")
def index(root: Path, check: bool) -> None:
    """Write ROOT/README.md: every ROOT/*/leaderboard.md with what it measures and its files.

    Generated from the tables' run records (each verified against its per-user files).
    """
    from crossbench.records.safe import check_not_link, read_regular
    from crossbench.report.index import render_index

    text = render_index(root)
    path = root / "README.md"
    if check:
        if not os.path.lexists(path) or read_regular(path, what="index") != text.encode("utf-8"):
            raise CrossbenchError(f"{path} is out of date; regenerate it with crossbench leaderboard index {root}")
        click.echo(f"{path} is up to date")
        return
    check_not_link(path, what="index")
    try:
        write_text_atomic(path, text)
    except OSError as exc:
        raise CrossbenchError(f"cannot write {path}: {exc.strerror or exc}") from None
    click.echo(f"wrote {path}")


class LeaderboardCommand(click.Command):
    """``leaderboard PATHS...``, or ``leaderboard index ROOT``: a subcommand named first is run instead."""

    subcommands = {"index": index}

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any) -> click.Context:
        if args and args[0] in self.subcommands:
            return self.subcommands[args[0]].make_context(args[0], args[1:], parent=parent, **extra)
        return super().make_context(info_name, args, parent=parent, **extra)


@click.command(cls=LeaderboardCommand)
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the Markdown here, with its CSV, JSON, pairwise table and plots beside it.")
@click.option("--check", "check", type=click.Path(dir_okay=False, path_type=Path),
              help="Fail if this Markdown file, or its CSV, JSON, pairwise table or plots, differ from the regenerated ones.")
def leaderboard(paths: tuple[Path, ...], output: Path | None, check: Path | None) -> None:
    """Build the leaderboard from run records (files or results folders).

    Every record is verified first: its schema, and each mean against its sha256-checked
    per-user file; a record that disagrees is refused.

    `crossbench leaderboard index ROOT [--check]` writes (or checks) ROOT/README.md, the index
    of the tables in ROOT's folders.
    """
    from crossbench.evaluate.peruser import PerUserFiles
    from crossbench.records.sources import read_sources
    from crossbench.report.curves import curve_plots
    from crossbench.report.exports import artefacts, stale, write_artefacts

    files_read = PerUserFiles()
    # a combined table's folder (no runs/, a sources.json) stands for the results folders it was built from
    expanded = [s for p in paths for s in ((read_sources(p) if p.is_dir() and not (p / "runs").is_dir() else None) or [p])]
    records = load_records(expanded, files=files_read)
    commands = {r.get("command") for r in records if r.get("command")}
    command = commands.pop() if len(commands) == 1 else None
    target = check or output
    stem = target.name.removesuffix(".md") if target is not None else "leaderboard"
    files = artefacts(records, command=command, stem=stem, files=files_read)
    markdown = files[f"{stem}.md"].content.decode("utf-8")
    if check is not None:
        out = stale(check.parent, files)
        if out:
            raise CrossbenchError(f"{check.parent}: out of date with its run records: {', '.join(out)}; "
                                  f"regenerate them with --output {check}")
        click.echo(f"{check} and its {len(files) - 1} companion file(s) are up to date")
        return
    if output is not None:
        from crossbench.records.sources import write_sources

        write_artefacts(output.parent, files)
        write_artefacts(output.parent, curve_plots(records, folder="plots" if stem == "leaderboard" else f"{stem}-plots"))
        if stem == "leaderboard":  # a table of results folders, kept elsewhere: `crossbench verify` finds them again
            write_sources(output.parent, list(paths))
    click.echo(markdown)
