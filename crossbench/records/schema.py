"""The run-record schema, and verification of a record against its per-user file.

A run record is a JSON document (see :mod:`crossbench.run.runner`); :data:`FIELDS` lists every
field that tables, tuning summaries and ``crossbench reproduce`` read, with its type. A record
is checked against it whenever it is read (:func:`check_record`), so a field deleted by hand is
one line naming the field, never a ``KeyError``.

:func:`verify_record` goes further: it recomputes every reported mean from the per-user file
the record names (checked against its sha256) and refuses a record whose means differ from the
recomputed ones by more than :data:`MEAN_TOLERANCE`, or whose per-user file covers a different
number of test users. Tables are built only from verified records, so a metric edited in a
record, by any amount, is refused rather than printed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crossbench.errors import CrossbenchError

if TYPE_CHECKING:
    from crossbench.evaluate.peruser import PerUserFiles

#: the largest difference between a reported mean and the mean recomputed from per-user values
MEAN_TOLERANCE = 1e-12

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


def _lookup(record: Mapping[str, Any], path: str) -> tuple[bool, Any]:
    node: Any = record
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False, None
        node = node[part]
    return True, node


def check_record(record: Any, *, where: str, schema: int) -> None:
    """Raise one line naming the first missing or mistyped field of ``record``."""
    if not isinstance(record, dict) or record.get("schema") != schema:
        raise CrossbenchError(f"{where}: not a crossbench run record of schema {schema}")
    for spec in FIELDS:
        found, value = _lookup(record, spec.path)
        if not found:
            raise CrossbenchError(f"{where}: required field {spec.path!r} is missing; the record was edited or is damaged — rerun it")
        if value is None and spec.nullable:
            continue
        if not isinstance(value, spec.types) or (bool not in spec.types and isinstance(value, bool)):
            names = " or ".join(t.__name__ for t in spec.types)
            raise CrossbenchError(f"{where}: field {spec.path!r} must be {names}, got {value!r}")
    ev = record["evaluation"]
    for key, value in ev["metrics"].items():
        if value is not None and (not isinstance(value, _NUMBER) or isinstance(value, bool)):
            raise CrossbenchError(f"{where}: metric {key!r} must be a number, got {value!r}")
    missing = [c for c in ev["columns"] if c not in ev["metrics"]]
    if missing:
        raise CrossbenchError(f"{where}: column(s) {', '.join(missing)} have no value in 'evaluation.metrics'")
    # optional: records written before the primary metric was recorded have none
    if "primary" in ev and ev["primary"] not in ev["columns"]:
        raise CrossbenchError(f"{where}: the primary metric {ev['primary']!r} is not one of its columns")


def per_user_path(record: Mapping[str, Any], *, record_dir: Path | None = None) -> Path:
    """Where the record's per-user file lies (beside the record unless ``record_dir`` says otherwise)."""
    base = record_dir or (Path(record["_path"]).parent if "_path" in record else Path("."))
    return base / str(record["evaluation"]["per_user"]["path"])


def verify_record(record: Mapping[str, Any], *, where: str, record_dir: Path | None = None, files: PerUserFiles | None = None) -> None:
    """Refuse ``record`` unless every reported mean equals the one recomputed from its per-user file
    (read through ``files``, so that a table build reads each file once)."""
    from crossbench.evaluate.peruser import PerUserFiles

    ev = record["evaluation"]
    path = per_user_path(record, record_dir=record_dir)
    if not path.is_file():
        raise CrossbenchError(f"{where}: its per-user file {path} is missing; the record cannot be verified")
    result = (files or PerUserFiles()).read(path, sha256=ev["per_user"]["sha256"], where=where)
    means, n_users = result.means, len(result.users)
    if n_users != record["protocol"]["n_test_users"]:
        raise CrossbenchError(
            f"{where}: the per-user file holds {n_users} users but the record says {record['protocol']['n_test_users']} test users"
        )
    for key, reported in ev["metrics"].items():
        if key not in means:
            raise CrossbenchError(f"{where}: metric {key!r} has no per-user values in {ev['per_user']['path']}")
        value = means[key]
        same = (reported is None or (isinstance(reported, float) and math.isnan(reported))) if math.isnan(value) else (
            reported is not None and abs(float(reported) - value) <= MEAN_TOLERANCE
        )
        if not same:
            raise CrossbenchError(
                f"{where}: {key} is {reported!r} in the record but {value!r} from its per-user file; the record was edited — rerun it"
            )
    missing = sorted(set(means) - set(ev["metrics"]))
    if missing:
        raise CrossbenchError(f"{where}: the per-user file has metric(s) {', '.join(missing)} that the record does not report")


def read_record(path: Path, *, schema: int) -> dict[str, Any]:
    """One run record from ``path``, checked against the schema (not yet against its per-user file)."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CrossbenchError(f"run record {path}: cannot read it ({exc})") from exc
    check_record(record, where=f"run record {path}", schema=schema)
    record["_path"] = str(path)
    return record
