"""The run-record schema, and verification of a record against its per-user file.

A run record is a JSON document (see :mod:`crossbench.run.runner`); :data:`FIELDS` lists every
field that tables, tuning summaries and ``crossbench reproduce`` read, with its type. A record
is checked against it whenever it is read (:func:`check_record`), so a field deleted by hand is
one line naming the field, never a ``KeyError``.

:func:`verify_record` goes further: it recomputes every reported mean from the per-user file
the record names (checked against its sha256) and refuses a record whose means are not exactly
(bit for bit) the recomputed ones -- the same float64 reduction in the same order as the
evaluator's, :attr:`EvalResult.means` -- or whose per-user file covers a different number of
test users. Tables are built only from verified records, so a metric edited in a record, by
any amount, is refused rather than printed.

Schema 2 records also carry their experiment's fingerprint (``experiment_fingerprint``: a
results folder refuses a record of another experiment) and a ``seal``, the sha256 of the
record's own canonical JSON, so that an edit of a field nothing can recompute (a timing, the
list of columns) is refused too unless the seal is recomputed with it. Schema 1 records
(written before those fields) are read under the rules of their time: without a seal, and
matched with their folder's experiment by dataset, protocol and seed.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crossbench.errors import CrossbenchError
from crossbench.records.safe import check_regular, read_json

if TYPE_CHECKING:
    from crossbench.evaluate.peruser import PerUserFiles

#: a results folder's manifest: the experiment its records belong to, and its fingerprint
MANIFEST = "experiment.json"

#: the schemas read: 1 (no fingerprint, no seal), 2 (both)
SCHEMAS = (1, 2)

_NUMBER = (int, float)


@dataclass(frozen=True)
class Field:
    """One required field of a run record: its dotted path and the JSON type(s) it must have."""

    path: str
    types: tuple[type, ...]
    #: ``None`` allowed (a value that is legitimately unknown, e.g. the command of an API run)
    nullable: bool = False


def _f(path: str, *types: type, nullable: bool = False) -> Field:
    return Field(path, types, nullable)


#: Every field a run record must have (schema 1).
FIELDS: tuple[Field, ...] = (
    _f("schema", int),
    _f("file", str),
    _f("experiment", str),
    _f("command", str, nullable=True),
    _f("seed", int),
    _f("threads", int),
    _f("device", str),
    _f("environment", dict),
    _f("environment.python", str),
    _f("environment.torch", str),
    _f("environment.numpy", str),
    _f("environment.crossbench", str),
    _f("plugins", list),
    _f("dataset", dict),
    _f("dataset.name", str),
    _f("dataset.params", dict),
    _f("dataset.fingerprint", str),
    _f("model", dict),
    _f("model.label", str),
    _f("model.name", str),
    _f("model.plugin", str),
    _f("model.params", dict),
    _f("protocol", dict),
    _f("protocol.name", str),
    _f("protocol.target", str),
    _f("protocol.params", dict),
    _f("protocol.split_fingerprint", str),
    _f("protocol.n_test_users", int),
    _f("fit", dict),
    _f("timings", dict),
    _f("timings.fit_s", *_NUMBER),
    _f("timings.eval_s", *_NUMBER),
    _f("evaluation", dict),
    _f("evaluation.mode", str),
    _f("evaluation.ks", list),
    _f("evaluation.columns", list),
    _f("evaluation.metrics", dict),
    _f("evaluation.per_user", dict),
    _f("evaluation.per_user.path", str),
    _f("evaluation.per_user.sha256", str),
)

#: Fields a schema 2 record has besides :data:`FIELDS`.
FIELDS_2: tuple[Field, ...] = (_f("experiment_fingerprint", str), _f("seal", str))

#: a per-user file's name: a plain file name beside its record, never a path
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,254}")


def _lookup(record: Mapping[str, Any], path: str) -> tuple[bool, Any]:
    node: Any = record
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def check_record(record: Any, *, where: str, schema: int) -> None:
    """Raise one line naming the first missing or mistyped field of ``record`` (of schema 1 to ``schema``)."""
    if not isinstance(record, dict) or type(record.get("schema")) is not int or not 1 <= record["schema"] <= schema:
        raise CrossbenchError(f"{where}: not a crossbench run record of schema {' or '.join(str(s) for s in SCHEMAS if s <= schema)}")
    for spec in FIELDS + (FIELDS_2 if record["schema"] >= 2 else ()):
        found, value = _lookup(record, spec.path)
        if not found:
            raise CrossbenchError(f"{where}: required field {spec.path!r} is missing; the record was edited or is damaged — rerun it")
        if value is None and spec.nullable:
            continue
        if not isinstance(value, spec.types) or (bool not in spec.types and isinstance(value, bool)):
            names = " or ".join(t.__name__ for t in spec.types)
            raise CrossbenchError(f"{where}: field {spec.path!r} must be {names}, got {_short(value)}")
    ev = record["evaluation"]
    for key, value in ev["metrics"].items():
        if value is not None and (not isinstance(value, _NUMBER) or isinstance(value, bool)):
            raise CrossbenchError(f"{where}: metric {_short(key)} must be a number, got {_short(value)}")
    if not all(isinstance(c, str) for c in ev["columns"]):
        raise CrossbenchError(f"{where}: 'evaluation.columns' must list metric names, got {_short(ev['columns'])}")
    missing = [c for c in ev["columns"] if c not in ev["metrics"]]
    if missing:
        raise CrossbenchError(f"{where}: column(s) {', '.join(map(str, missing))[:200]} have no value in 'evaluation.metrics'")
    # every metric that is not a group breakdown is a column, once: a dropped column is an edit
    plain = sorted(k for k in ev["metrics"] if "[" not in k)
    if sorted(map(str, ev["columns"])) != plain:
        raise CrossbenchError(f"{where}: 'evaluation.columns' lists {len(ev['columns'])} column(s) but the record has "
                              f"{len(plain)} metric(s) ({', '.join(plain)[:150]}); the record was edited — rerun it")
    # optional: records written before the primary metric was recorded have none
    if "primary" in ev and ev["primary"] not in ev["columns"]:
        raise CrossbenchError(f"{where}: the primary metric {_short(ev['primary'])} is not one of its columns")


def per_user_path(record: Mapping[str, Any], *, record_dir: Path | None = None, where: str = "run record") -> Path:
    """Where the record's per-user file lies (beside the record unless ``record_dir`` says otherwise).

    Its name must be a plain file name: a path that would leave the folder (``../``, absolute) is refused.
    """
    name = str(record["evaluation"]["per_user"]["path"])
    if not _PLAIN_NAME.fullmatch(name) or name.endswith(".json"):
        raise CrossbenchError(f"{where}: per-user path {name[:80]!r} must be a plain file name beside the record "
                              "(no folder, no '..', not absolute); the record was edited")
    base = record_dir or (Path(record["_path"]).parent if "_path" in record else Path("."))
    return base / name


def record_seal(record: Mapping[str, Any]) -> str:
    """sha256 of ``record``'s canonical JSON, without its ``seal`` and the ``_path`` a reader adds."""
    body = {k: v for k, v in record.items() if k not in ("seal", "_path")}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def _read_per_user(record: Mapping[str, Any], path: Path, *, where: str, files: PerUserFiles | None) -> Any:
    """The record's per-user file: a regular file (no link, FIFO or device), sha-checked, loaded without pickles."""
    from crossbench.evaluate.peruser import PerUserFiles

    try:
        check_regular(path, what=f"{where}: per-user file")
    except FileNotFoundError:
        raise CrossbenchError(f"{where}: its per-user file {path} is missing; the record cannot be verified — "
                              "rerun it (`crossbench run` reruns a run whose per-user file is missing)") from None
    try:
        result = (files or PerUserFiles()).read(path, sha256=record["evaluation"]["per_user"]["sha256"], where=where)
        users = result.users
        arrays = dict(result.per_user)
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
        reason = (str(exc).splitlines() or [type(exc).__name__])[0][:120]
        raise CrossbenchError(f"{where}: per-user file {path.name} is not a per-user file crossbench wrote ({reason})") from None
    if users.ndim != 1 or users.dtype.kind not in "iu" or any(
        a.ndim != 1 or a.dtype.kind != "f" or len(a) != len(users) for a in arrays.values()
    ):
        raise CrossbenchError(f"{where}: per-user file {path.name} holds arrays of the wrong type or length; "
                              "it is not a per-user file crossbench wrote")
    return result


def verify_record(record: Mapping[str, Any], *, where: str, record_dir: Path | None = None, files: PerUserFiles | None = None) -> None:
    """Refuse ``record`` unless every reported mean is exactly the one recomputed from its per-user file
    (read through ``files``, so that a table build reads each file once), and a schema 2 record its seal."""
    ev = record["evaluation"]
    path = per_user_path(record, record_dir=record_dir, where=where)
    result = _read_per_user(record, path, where=where, files=files)
    means, n_users = result.means, len(result.users)
    if n_users != record["protocol"]["n_test_users"]:
        raise CrossbenchError(
            f"{where}: the per-user file holds {n_users} users but the record says {record['protocol']['n_test_users']} test users"
        )
    for key, reported in ev["metrics"].items():
        if key not in means:
            raise CrossbenchError(f"{where}: metric {_short(key)} has no per-user values in {ev['per_user']['path']}")
        value = means[key]
        # exact: JSON keeps a float64 to the bit, and the mean is the evaluator's own reduction
        same = (reported is None or (isinstance(reported, float) and math.isnan(reported))) if math.isnan(value) else (
            reported is not None and float(reported) == value
        )
        if not same:
            raise CrossbenchError(
                f"{where}: {key[:80]} is {reported!r} in the record but {value!r} from its per-user file; the record was edited — rerun it"
            )
    missing = sorted(set(means) - set(ev["metrics"]))
    if missing:
        raise CrossbenchError(f"{where}: the per-user file has metric(s) {', '.join(missing)} that the record does not report")
    if record["schema"] >= 2 and record_seal(record) != record["seal"]:
        raise CrossbenchError(f"{where}: its fields do not match its seal (a field was edited after the run wrote it, "
                              "for example a timing or the columns); rerun it")


def read_record(path: Path, *, schema: int) -> dict[str, Any]:
    """One run record from ``path`` (a regular file, bounded in size), checked against the schema and its
    file name (not yet against its per-user file)."""
    record = read_json(Path(path), what="run record")
    check_record(record, where=f"run record {path}", schema=schema)
    if record["file"] != Path(path).name:
        raise CrossbenchError(f"run record {path}: it is the record of {record['file'][:80]!r} under another file name "
                              "(a copy); remove the copy — a run is counted once")
    record["_path"] = str(path)
    return record


def _schema1_mismatch(record: Mapping[str, Any], exp: Mapping[str, Any]) -> str | None:
    """What a schema 1 record (no fingerprint) has that its folder's experiment does not; ``None``: it matches."""
    ds, proto = exp["dataset"], exp["protocol"]
    params = {k: v for k, v in record["protocol"]["params"].items() if k not in ("seed", "target")}
    if record["dataset"]["name"] != ds["name"] or record["dataset"]["params"] != ds["params"]:
        return f"dataset {record['dataset']['name'][:40]!r} {record['dataset']['params']!r:.80}"
    if record["protocol"]["name"] != proto["name"] or params != proto["params"]:
        return f"protocol {record['protocol']['name'][:40]!r} {params!r:.80}"
    if record["seed"] not in exp["seeds"]:
        return f"seed {record['seed']}"
    return None


def read_manifest(path: Path) -> dict[str, Any] | None:
    """A results folder's ``experiment.json`` (``None`` when there is none); one that is not a regular
    file, not JSON or has no fingerprint is refused with one line."""
    if not os.path.lexists(path):
        return None
    body = read_json(path, what="experiment manifest")
    if not isinstance(body, dict) or not isinstance(body.get("fingerprint"), str):
        raise CrossbenchError(f"experiment manifest {path}: not written by crossbench (no fingerprint); "
                              "choose another --output, or pass --overwrite to replace the folder")
    return body


def _of_earlier_form(record: Mapping[str, Any], manifest: Mapping[str, Any]) -> bool:
    """Whether the record is a run of an earlier form of the folder's experiment (one before models were
    added, kept under ``extends``; :mod:`crossbench.experiment.extend`) whose models include the record's."""
    forms = manifest.get("extends")
    if not isinstance(forms, list):
        return False
    label = record["model"]["label"]
    return any(isinstance(f, dict) and f.get("fingerprint") == record["experiment_fingerprint"]
               and isinstance(f.get("models"), list) and label in f["models"] for f in forms)


def check_belongs(record: Mapping[str, Any], *, manifest: Mapping[str, Any], where: str) -> None:
    """Refuse a record of a results folder that is not of the folder's experiment (``manifest``: its experiment.json).

    A schema 2 record must carry the manifest's fingerprint, or that of an earlier form of the experiment
    the manifest keeps (models were added since) with its model among that form's; a schema 1 record (from before the
    field) must match the manifest's dataset, protocol and seeds (not its model labels: published
    schema 1 rows were relabelled by hand, with a note, after they were run).
    """
    fingerprint = manifest.get("fingerprint")
    if record["schema"] >= 2:
        if record["experiment_fingerprint"] != fingerprint and not _of_earlier_form(record, manifest):
            raise CrossbenchError(
                f"{where}: belongs to another experiment (fingerprint {record['experiment_fingerprint'][:12]}) than its "
                f"folder's experiment.json ({str(fingerprint)[:12]}); a foreign or stale record is not used — move it out"
            )
        return
    try:
        wrong = _schema1_mismatch(record, manifest["experiment"])
    except (KeyError, TypeError, AttributeError):
        raise CrossbenchError(f"{where}: its folder's experiment.json does not say which experiment it holds; "
                              "the folder was edited") from None
    if wrong is not None:
        raise CrossbenchError(f"{where}: its {wrong} is not that of its folder's experiment; a foreign or stale record "
                              "is not used — move it out")
