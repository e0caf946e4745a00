"""``crossbench add-breakdowns``: the "where each model wins and loses" breakdowns for run records
written before runs recorded them.

A record's breakdowns (:mod:`crossbench.evaluate.breakdowns`) are derived from its run; this
command derives them again without changing anything the record reports:

- a **sampled** run's breakdown (source-history length only) is a grouping of the per-user
  values its record already holds: the split is rebuilt, checked against the record's split
  fingerprint, and its test users' source histories group the values of the per-user file;
- a **full-ranking** run's popularity tiers need the ranking itself: the row is refitted exactly
  as ``crossbench reproduce`` refits it, and its breakdowns are taken only when every metric and
  every per-user value of the refit is bit-identical to the record's (the record's library
  versions, device and thread count are required; a refit that differs is listed, exit status 3).
  A row the current code no longer refits bit-identically (its model changed since) can still
  get its source-history breakdown from its per-user values alone (``--no-refit``).

The record then gains ``evaluation.breakdowns`` and ``evaluation.breakdowns_added`` (how they were
derived, by which crossbench commit, when, and the record's seal before), and a new seal; its
metrics, per-user file and every other field stay as they were. The folder's tables are rebuilt.
Records that have breakdowns are left alone. Writes take the folder's lock one record at a time,
so two processes may share a folder's records (``--model`` picks each one's share).
"""

from __future__ import annotations

import datetime as _dt
import math
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from crossbench.cli.records import DIFFERS, compare_runs, record_experiment
from crossbench.errors import CrossbenchError

if TYPE_CHECKING:
    from crossbench.records.folder import ResultsFolder

#: how long a write waits for the folder's lock held by another process (a table rebuild, another share)
LOCK_WAIT_S = 600.0
#: the record's versions that a bit-identical refit needs
_VERSIONS = ("torch", "numpy", "crossbench", "python")


def _registry() -> Any:
    from crossbench.cli.common import current_state

    return current_state().registry


def _pending(folder: Path, models: tuple[str, ...], seeds: tuple[int, ...]) -> list[dict[str, Any]]:
    """The folder's verified records that have no breakdowns, restricted to ``models`` and ``seeds``."""
    from crossbench.records.store import load_records

    records = load_records([folder])
    labels = {r["model"]["label"] for r in records}
    unknown = [m for m in models if m not in labels]
    if unknown:
        raise CrossbenchError(f"--model {unknown[0]!r}: no run of that model in {folder}; its models are "
                              f"{', '.join(sorted(labels))[:300]}")
    return [r for r in records if not r["evaluation"].get("breakdowns")
            and (not models or r["model"]["label"] in models) and (not seeds or int(r["seed"]) in seeds)]


def _check_refit(rec: dict[str, Any], here: dict[str, Any]) -> None:
    """Refuse a full-ranking record whose refit could not be bit-identical in this environment (``here``)."""
    differ = [f"{k} {rec['environment'].get(k)} (now {here[k]})" for k in _VERSIONS if here[k] != rec["environment"].get(k)]
    if differ or rec["device"] != "cpu":
        what = ", ".join(differ) if differ else f"device {rec['device']}"
        raise CrossbenchError(f"run record {rec['_path']}: its popularity tiers need a bit-identical refit, but it was run with "
                              f"{what}; add its breakdowns where those match (run the command with those versions)")


def _from_per_user(rec: dict[str, Any], exp: Any, data: Any) -> dict[str, Any]:
    """A sampled (or rating) record's breakdowns: its per-user values grouped by the rebuilt split's source histories."""
    from crossbench.evaluate.breakdowns import record_breakdowns
    from crossbench.evaluate.groups import item_popularity
    from crossbench.evaluate.peruser import load_per_user
    from crossbench.plugin.build import make_protocol
    from crossbench.records.schema import per_user_path

    split = make_protocol(_registry(), exp.protocol.name, target=rec["protocol"]["target"], seed=int(rec["seed"]),
                          **exp.protocol.params).split(data)
    if split.fingerprint() != rec["protocol"]["split_fingerprint"]:
        raise CrossbenchError(f"run record {rec['_path']}: the rebuilt split's fingerprint {split.fingerprint()[:12]} is not "
                              f"the record's {rec['protocol']['split_fingerprint'][:12]}; its per-user values cannot be grouped")
    result = load_per_user(per_user_path(rec), sha256=rec["evaluation"]["per_user"]["sha256"], where=rec["_path"])
    return record_breakdowns(result, {}, train=split.train, target=split.target, columns=rec["evaluation"]["columns"],
                             popularity=item_popularity(split.train, split.target), relevant_items=split.test.items)


def _from_refit(rec: dict[str, Any], exp: Any, cache_dir: Path) -> tuple[dict[str, Any] | None, list[str]]:
    """A full-ranking record's breakdowns from a refit of its row, or ``None`` and the differences found."""
    from crossbench.plugin.experiment import RunOptions
    from crossbench.records.store import load_records
    from crossbench.run.runner import run_experiment

    record = Path(rec["_path"])
    with tempfile.TemporaryDirectory(prefix="crossbench-breakdowns-") as tmp:
        options = RunOptions(output_dir=Path(tmp) / "out", device="cpu", threads=int(rec["threads"]), progress=False,
                             cache_dir=cache_dir)
        run_experiment(exp, registry=_registry(), options=options)
        (new,) = load_records([options.output_dir])
        result = compare_runs(rec, new, tolerance=0.0, old_dir=record.parent, new_dir=options.output_dir / "runs")
    return (None, result.differences) if result.differences else (new["evaluation"]["breakdowns"], [])


def _write(folder: ResultsFolder, rec: dict[str, Any], breakdowns: dict[str, Any], *, how: str) -> None:
    """Under the folder's lock: add ``breakdowns`` to the record on disk if it is still the one derived from."""
    from crossbench.records.schema import read_record
    from crossbench.records.store import SCHEMA_VERSION, git_commit, write_record
    from crossbench.version import __version__

    path = Path(rec["_path"])
    with folder.locked(wait_s=LOCK_WAIT_S):
        now = read_record(path, schema=SCHEMA_VERSION)
        if now.get("seal") != rec.get("seal") or now["evaluation"].get("breakdowns"):
            raise CrossbenchError(f"run record {path}: it changed while its breakdowns were derived; run the command again")
        now.pop("_path")
        now["evaluation"]["breakdowns"] = breakdowns
        now["evaluation"]["breakdowns_added"] = {
            "how": how, "crossbench": __version__, "git_commit": git_commit(), "seal_before": rec.get("seal"),
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        }
        write_record(path, now)


def _rebuild_tables(folder: ResultsFolder) -> int:
    """Rebuild the folder's table, CSV, JSON and plots from its records (as a run does); return the file count."""
    from crossbench.evaluate.peruser import PerUserFiles
    from crossbench.records.store import load_records
    from crossbench.report.curves import curve_plots
    from crossbench.report.exports import artefacts, write_artefacts

    with folder.locked(wait_s=LOCK_WAIT_S):
        files_read = PerUserFiles()
        records = load_records([folder.path], files=files_read)
        commands = {r.get("command") for r in records if r.get("command")}
        files = artefacts(records, command=commands.pop() if len(commands) == 1 else None, record_dir=folder.runs, files=files_read)
        write_artefacts(folder.path, files)
        write_artefacts(folder.path, curve_plots(records))
    return len(files)


@click.command("add-breakdowns")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--model", "models", multiple=True, help="Only this model's records (repeatable; default: every model).")
@click.option("--seed", "seeds", multiple=True, type=int, help="Only this seed's records (repeatable; default: every seed).")
@click.option("--no-refit", is_flag=True,
              help="Full-ranking records too from their per-user values alone: the source-history breakdown, no popularity tiers "
                   "(for rows the current code no longer refits bit-identically).")
@click.option("--cache-dir", type=click.Path(path_type=Path), default=Path(".crossbench-cache"), show_default=True,
              help="Cache for encoded item text (refits of text models).")
def add_breakdowns(folder: Path, models: tuple[str, ...], seeds: tuple[int, ...], no_refit: bool, cache_dir: Path) -> None:
    """Add breakdowns by source-history length and item popularity to FOLDER's records that lack them.

    Sampled runs: from their per-user values and the rebuilt split. Full-ranking runs: from a
    refit of the row that must be bit-identical to the record (as `crossbench reproduce`), on
    the record's thread count (with --no-refit: the source-history breakdown alone, from the
    per-user values). Nothing a record reports changes; each gains its breakdowns and a
    note of how they were added (`evaluation.breakdowns_added`), and the tables are rebuilt.
    Exit status 0: every selected record has its breakdowns; 3: a refit differed (listed, that
    record left as it was); 2: bad input.
    """
    from crossbench.experiment.checks import dataset_params
    from crossbench.records.folder import ResultsFolder
    from crossbench.records.store import environment

    if not (folder / "runs").is_dir():
        raise CrossbenchError(f"{folder}: not a results folder (no runs/ in it); name the folder a run or tune command wrote")
    todo = _pending(folder, models, seeds)
    refits = [r for r in todo if r["evaluation"]["mode"] == "full" and not no_refit]
    here = environment()
    for rec in refits:
        _check_refit(rec, here)
    results = ResultsFolder(folder)
    click.echo(f"{folder}: {len(todo)} record(s) without breakdowns: {len(todo) - len(refits)} from their per-user values, "
               f"{len(refits)} by a bit-identical refit")
    data: Any = None
    failed = 0
    for i, rec in enumerate(todo, 1):
        name = Path(rec["_path"]).name
        t0 = time.perf_counter()
        _, exp = record_experiment(Path(rec["_path"]))  # the experiment that reruns exactly this row
        if rec["evaluation"]["mode"] == "full" and not no_refit:
            breakdowns, differences = _from_refit(rec, exp, cache_dir)
            how = "bit-identical refit"
        else:
            if data is None:
                data = _registry().get("datasets", exp.dataset.name).factory(**dataset_params(exp, _registry())).load()
            breakdowns, differences, how = _from_per_user(rec, exp, data), [], "per-user values"
            if rec["evaluation"]["mode"] == "full":
                how = "per-user values, without refit (source history only)"
        if breakdowns is None:
            failed += 1
            for line in differences:
                click.echo(f"differs: {name}: {line}")
            click.echo(f"[{i}/{len(todo)}] {name}: the refit is not bit-identical; left as it was")
            continue
        if not breakdowns:
            click.echo(f"[{i}/{len(todo)}] {name}: no per-user values (a rating run), nothing to add")
            continue
        _write(results, rec, breakdowns, how=how)
        click.echo(f"[{i}/{len(todo)}] {name}: breakdowns added ({how}, {math.ceil(time.perf_counter() - t0)} s)")
    if todo:
        click.echo(f"{folder}: {_rebuild_tables(results)} table, CSV, JSON and plot file(s) rebuilt")
    if failed:
        click.echo(f"crossbench: add-breakdowns: {failed} refit(s) differed from their records; those records are unchanged", err=True)
        click.get_current_context().exit(DIFFERS)
