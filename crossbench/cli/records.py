"""``crossbench verify`` and ``crossbench reproduce``: checking published results without trusting them."""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import click

from crossbench.cli.launch import nproc_option, ranks_of
from crossbench.errors import CrossbenchError

#: exit status of `crossbench reproduce` when the rerun differs from the record
DIFFERS = 3
#: the default tolerance when the rerun's versions or device differ from the record's
DEFAULT_TOLERANCE = 1e-6


def _registry() -> Any:
    from crossbench.cli.common import current_state

    return current_state().registry


def check_fingerprints(records: list[dict[str, Any]], registry: Any) -> list[str]:
    """Reload each dataset the records name and re-split it; raise on a fingerprint that disagrees.

    Returns one line per dataset that could not be checked (for example data not prepared here).
    """
    from crossbench.plugin.build import make_protocol
    from crossbench.plugin.params import coerce_kwargs

    notes = []
    by_dataset: dict[str, list[dict[str, Any]]] = {}
    for rec in records:
        by_dataset.setdefault(json.dumps([rec["dataset"]["name"], rec["dataset"]["params"]], sort_keys=True), []).append(rec)
    for recs in by_dataset.values():
        ds = recs[0]["dataset"]
        try:
            spec = registry.get("datasets", ds["name"])
            data = spec.factory(**coerce_kwargs(spec, ds["params"], where=f"dataset {ds['name']!r}")).load()
        except CrossbenchError as exc:
            notes.append(f"dataset {ds['name']!r}: fingerprints not checked (the data is not at hand: {exc})")
            continue
        fingerprint = data.fingerprint()
        splits: dict[str, str] = {}
        for rec in recs:
            where = f"run record {rec['_path']}"
            if rec["dataset"]["fingerprint"] != fingerprint:
                raise CrossbenchError(
                    f"{where}: dataset fingerprint {rec['dataset']['fingerprint'][:12]} does not match {ds['name']!r} "
                    f"as loaded here ({fingerprint[:12]}); the record or the data differs"
                )
            p = rec["protocol"]
            key = json.dumps([p["name"], p["target"], rec["seed"], p["params"]], sort_keys=True)
            if key not in splits:
                params = {k: v for k, v in p["params"].items() if k not in ("seed", "target")}
                splits[key] = make_protocol(registry, p["name"], target=p["target"], seed=rec["seed"], **params).split(data).fingerprint()
            if p["split_fingerprint"] != splits[key]:
                raise CrossbenchError(
                    f"{where}: split fingerprint {p['split_fingerprint'][:12]} does not match the {p['name']} split of "
                    f"target {p['target']!r}, seed {rec['seed']} made here ({splits[key][:12]})"
                )
    return notes


def check_manifest(folder: Path) -> str | None:
    """Recompute the fingerprint of the experiment ``FOLDER/experiment.json`` holds; raise when it is not
    the fingerprint the manifest states. Returns a line to print (``None`` without a manifest)."""
    from crossbench.experiment.extend import check_extends
    from crossbench.experiment.tomlfile import experiment_from_manifest
    from crossbench.plugin.experiment import TuningSettings, experiment_fingerprint
    from crossbench.records.schema import MANIFEST, read_manifest

    manifest = read_manifest(folder / MANIFEST)
    if manifest is None or "simulation" in manifest:  # a simulation's folder: its fingerprint covers its settings too
        return None
    where = str(folder / MANIFEST)
    exp = experiment_from_manifest(manifest.get("experiment") or {}, where=where)
    try:
        tuning = TuningSettings(**manifest["tuning"]) if manifest.get("tuning") else None
    except TypeError as exc:
        raise CrossbenchError(f"{where}: its tuning settings are not crossbench's ({exc})") from None
    actual = experiment_fingerprint(exp, tuning)
    if actual != manifest["fingerprint"]:
        raise CrossbenchError(f"{where}: states fingerprint {manifest['fingerprint'][:12]} but holds the experiment of "
                              f"fingerprint {actual[:12]}; the manifest was edited")
    forms = check_extends(manifest, exp, tuning, where=where)
    earlier = f" (or, for the {forms} earlier form(s) before models were added, theirs)" if forms else ""
    return f"{MANIFEST}: fingerprint {actual[:12]} is that of the experiment it holds, and every record carries{earlier} or matches it"


@click.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--no-data", is_flag=True, help="Do not reload the datasets to check the records' fingerprints.")
def verify(folder: Path, no_data: bool) -> None:
    """Check a results folder or published table without writing anything.

    Every run record is checked against the schema; every mean is recomputed from its
    sha256-checked per-user file; dataset and split fingerprints are recomputed from the data
    where it is at hand; and the tables, CSV, JSON and plots in FOLDER are regenerated in
    memory and compared with the files. A table built from several results folders
    (`leaderboard A B --output FOLDER/leaderboard.md`) is checked against the records of the
    folders its sources.json names. Any disagreement is one line and exit status 2.
    """
    from crossbench.evaluate.peruser import PerUserFiles
    from crossbench.records.sources import read_sources
    from crossbench.records.store import load_records
    from crossbench.report.exports import artefacts, stale

    sources = None if (folder / "runs").is_dir() else read_sources(folder)  # a table built from other results folders
    manifest_lines = [f"{p}: {line}" if sources else line for p in (sources or [folder]) if (line := check_manifest(p))]
    per_user = PerUserFiles()  # each per-user file read once: verified here, then read by the tables
    records = load_records(sources or [folder], files=per_user)
    n_users = sum(int(r["protocol"]["n_test_users"]) for r in records)
    where = f" of {len(sources)} results folders ({', '.join(map(str, sources))})" if sources else ""
    click.echo(f"{len(records)} run record(s){where}: schema, per-user files and {n_users} users' values agree with every reported mean")
    added = [r["evaluation"]["breakdowns_added"].get("how") for r in records if isinstance(r["evaluation"].get("breakdowns_added"), dict)]
    if added:
        hows = ", ".join(f"{added.count(h)} from {h}" for h in sorted(set(map(str, added))))
        click.echo(f"{len(added)} record(s) gained their breakdowns after their run (crossbench add-breakdowns; {hows})")
    for line in manifest_lines:
        click.echo(line)
    if not no_data:
        notes = check_fingerprints(records, _registry())
        for line in notes:
            click.echo(line)
        if not notes:
            click.echo("dataset and split fingerprints agree with the data")
    if os.path.lexists(folder / "leaderboard.md"):  # a FIFO or link in its place is reported, never read
        commands = {r.get("command") for r in records if r.get("command")}
        files = artefacts(records, command=commands.pop() if len(commands) == 1 else None, files=per_user)
        out = stale(folder, files)
        if out:
            raise CrossbenchError(f"{folder}: out of date with its run records: {', '.join(out)}; regenerate with "
                                  f"`crossbench leaderboard {folder} --output {folder / 'leaderboard.md'}`")
        click.echo(f"{len(files)} table, CSV, JSON and plot file(s) are current")


@dataclass(frozen=True)
class Comparison:
    """How a rerun compares with its record."""

    differences: list[str]
    n_values: int
    n_users: int


def compare_runs(old: Mapping[str, Any], new: Mapping[str, Any], *, tolerance: float, old_dir: Path, new_dir: Path) -> Comparison:
    """Metric means and every per-user value of two records of the same row, within ``tolerance``."""
    import numpy as np

    diffs = []
    for field_path in (("dataset", "fingerprint"), ("protocol", "split_fingerprint")):
        a, b = old[field_path[0]][field_path[1]], new[field_path[0]][field_path[1]]
        if a != b:
            diffs.append(f"{'.'.join(field_path)}: {a[:12]} in the record, {b[:12]} now")

    def close(a: float, b: float) -> bool:
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b if tolerance == 0 else abs(a - b) <= tolerance

    old_m, new_m = old["evaluation"]["metrics"], new["evaluation"]["metrics"]
    for key in sorted(set(old_m) | set(new_m)):
        a, b = old_m.get(key), new_m.get(key)
        if a is None or b is None or not close(float(a), float(b)):
            diffs.append(f"{key}: {a!r} in the record, {b!r} now")
    n_values = 0
    with np.load(old_dir / old["evaluation"]["per_user"]["path"]) as za, np.load(new_dir / new["evaluation"]["per_user"]["path"]) as zb:
        if not np.array_equal(za["users"], zb["users"]):
            diffs.append("the test users differ")
        else:
            for key in sorted(set(za.files) - {"users", "meta"}):
                if key not in zb.files:
                    continue
                a, b = np.asarray(za[key], dtype=np.float64), np.asarray(zb[key], dtype=np.float64)
                n_values += a.size
                same = np.isnan(a) == np.isnan(b)
                ok = ~np.isnan(a) & ~np.isnan(b)
                same[ok] = (a[ok] == b[ok]) if tolerance == 0 else (np.abs(a[ok] - b[ok]) <= tolerance)
                if not same.all():
                    diffs.append(f"per-user {key}: {int((~same).sum())} of {a.size} users differ")
        n_users = int(len(za["users"]))
    return Comparison(diffs, n_values, n_users)


def _kept_experiment(record_path: Path) -> Any:
    from crossbench.experiment.tomlfile import experiment_from_manifest, experiment_from_text
    from crossbench.records.folder import EXPERIMENT_FILE, MANIFEST
    from crossbench.records.safe import read_regular
    from crossbench.records.schema import read_manifest

    kept = record_path.parent / EXPERIMENT_FILE
    if os.path.lexists(kept):  # a regular file only: never read through a link, a FIFO or a device
        text = read_regular(kept, what="experiment file").decode("utf-8", errors="replace")
        return experiment_from_text(text, where=f"experiment file {kept}")
    manifest = record_path.parent.parent / MANIFEST
    body = read_manifest(manifest)
    if body is not None:
        if not isinstance(body.get("experiment"), dict):
            raise CrossbenchError(f"{manifest}: cannot read the experiment from it (no 'experiment' object)")
        return experiment_from_manifest(body["experiment"], where=str(manifest))
    raise CrossbenchError(
        f"run record {record_path}: no {EXPERIMENT_FILE} beside it and no {MANIFEST} in its results folder; "
        "reproduce needs the experiment the record belongs to"
    )


def record_experiment(record: Path) -> tuple[dict[str, Any], Any]:
    """A run record (schema-checked, verified against its per-user file and its folder's experiment) and
    the experiment that reruns exactly its row: its model with the record's hyperparameters, its seed, its target."""
    from crossbench.experiment.tomlfile import model_from_record
    from crossbench.records.schema import MANIFEST, check_belongs, read_manifest, read_record, verify_record
    from crossbench.records.store import SCHEMA_VERSION

    rec = read_record(record, schema=SCHEMA_VERSION)
    manifest = read_manifest(record.parent.parent / MANIFEST)
    if manifest is not None and record.parent.name == "runs":
        check_belongs(rec, manifest=manifest, where=f"run record {record}")
    verify_record(rec, where=f"run record {record}")
    exp = _kept_experiment(record)
    model = model_from_record(rec["model"])
    if rec["dataset"]["name"] != exp.dataset.name or dict(rec["dataset"]["params"]) != dict(exp.dataset.params):
        raise CrossbenchError(f"run record {record}: its dataset differs from the experiment kept beside it")
    kept = {k: v for k, v in rec["protocol"]["params"].items() if k not in ("seed", "target")}
    spec = _registry().get("protocols", exp.protocol.name) if rec["protocol"]["name"] == exp.protocol.name else None
    defaults = spec.parameters() if spec is not None and hasattr(spec, "parameters") else {}
    expected = {**{k: defaults[k] for k in kept if k in defaults}, **exp.protocol.params}  # a record also names defaults
    if spec is None or kept != expected:
        raise CrossbenchError(f"run record {record}: its protocol {rec['protocol']['name']} {kept} differs from the experiment kept beside it")
    exp = replace(exp, models=(model,), seeds=(int(rec["seed"]),),
                  protocol=replace(exp.protocol, targets=(rec["protocol"]["target"],)))
    return rec, exp


@click.command()
@click.argument("record", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--tolerance", type=float, help=f"Largest difference allowed (default: 0 with the record's versions and device, else {DEFAULT_TOLERANCE}).")
@click.option("--device", help="Device to rerun on (default: the record's).")
@click.option("--cache-dir", type=click.Path(path_type=Path), default=Path(".crossbench-cache"), show_default=True,
              help="Cache for encoded item text.")
@nproc_option
def reproduce(record: Path, tolerance: float | None, device: str | None, cache_dir: Path, nproc: int | None) -> None:
    """Rerun one leaderboard row from its run record and compare every value.

    The row is refitted with the hyperparameters its record holds (for a tuned row, the
    tuned ones; the study is not rerun), on the record's thread count, and evaluated on the
    same split. With the record's library versions on the same device, metrics and per-user
    values must be bit-identical; otherwise they must agree within the tolerance. Exit status
    0: reproduced; 3: values differ (each difference listed); 2: bad input.
    """
    from crossbench.plugin.experiment import RunOptions
    from crossbench.records.store import environment, load_records
    from crossbench.run.runner import run_experiment

    if tolerance is not None and not (math.isfinite(tolerance) and tolerance >= 0):
        raise CrossbenchError(f"--tolerance must be a finite number of at least 0, got {tolerance}")
    rec, exp = record_experiment(record)
    run_device = device or ("cpu" if rec["device"] == "cpu" else "auto")
    here = environment()
    same = all(here[k] == rec["environment"].get(k) for k in ("torch", "numpy", "crossbench", "python"))
    tol = tolerance if tolerance is not None else (0.0 if same and run_device == rec["device"] else DEFAULT_TOLERANCE)
    if rec["model"].get("tuning"):
        click.echo("tuned row: refitting with the tuned hyperparameters of its record (the study is not rerun)", err=True)
    with ranks_of("reproduce", nproc, exp, _registry(), run_device) as dp, \
            tempfile.TemporaryDirectory(prefix="crossbench-reproduce-") as tmp:
        if dp is None:  # --nproc N: this process watched the N ranks that reproduced the row
            return
        options = RunOptions(output_dir=Path(tmp) / "out", device=run_device, threads=int(rec["threads"]), progress=False,
                             cache_dir=cache_dir)
        run_experiment(exp, registry=_registry(), options=options)
        if not dp.writes:
            return
        (new,) = load_records([options.output_dir])
        result = compare_runs(rec, new, tolerance=tol, old_dir=record.parent, new_dir=options.output_dir / "runs")
    what = "bit-identical" if tol == 0 else f"within {tol:g}"
    was, now = rec.get("distributed") or {"world_size": 1}, new["distributed"]
    if was.get("world_size") != now["world_size"]:
        said = [f"{d['world_size']} processes ({d.get('backend')})" if d["world_size"] > 1 else "1 process" for d in (was, now)]
        click.echo(f"processes: {said[0]} in the record, {said[1]} now; data-parallel training draws its negatives per "
                   "process, so its metrics equal another process count's only where nothing is drawn; every value is compared")
    guard = ("the record's seal guards them against edits" if "seal" in rec
             else "this record predates seals, so an edit of them is not detectable")
    click.echo(f"fit time: {rec['timings']['fit_s']:.2f} s in the record, {new['timings']['fit_s']:.2f} s now "
               f"(timings depend on the machine's load and are not compared; {guard})")
    if result.differences:
        for line in result.differences:
            click.echo(f"differs: {line}")
        click.echo(f"crossbench: reproduce: {len(result.differences)} difference(s) beyond {what} for {record.name}", err=True)
        click.get_current_context().exit(DIFFERS)
    click.echo(f"reproduced {record.name}: {len(rec['evaluation']['metrics'])} metrics and {result.n_values} per-user values "
               f"of {result.n_users} users {what}")
