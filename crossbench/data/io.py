"""Reading local data files with errors that name the file, the line and the column.

Every reader here either returns a complete frame or raises a :class:`DataFileError`
saying which file, which line (1-based, counting the header) or column was wrong, and
what to do. Gzip-compressed files (``.gz``) are read transparently.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import zlib
from collections import defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from crossbench.errors import CrossbenchError, closest, short_repr, shorten

JSON_CHUNK = 200_000


class DataFileError(CrossbenchError):
    """A data file is missing, malformed or not in the expected encoding."""


def require_file(path: Path, *, what: str, hint: str = "") -> Path:
    """``path`` if it is a readable file, else a :class:`DataFileError` naming it."""
    if not path.is_file():
        near = closest(path.name, [p.name for p in path.parent.iterdir()]) if path.parent.is_dir() else []
        msg = f"{what}: file {str(path)!r} not found"
        if near:
            msg += f"; files nearby: {', '.join(near)}"
        if hint:
            msg += f"; {hint}"
        raise DataFileError(msg)
    return path


def find_file(directory: Path, candidates: Sequence[str], *, what: str) -> Path:
    """The first of ``candidates`` (file names, also tried with ``.gz``) present in ``directory``."""
    if not directory.is_dir():
        raise DataFileError(f"{what}: directory {str(directory)!r} not found; pass path=DIR with the data files")
    for name in candidates:
        for suffix in ("", ".gz"):
            p = directory / f"{name}{suffix}"
            if p.is_file():
                return p
    present = sorted(p.name for p in directory.iterdir())
    near = sorted({n for c in candidates for n in closest(c, present)})
    msg = f"{what}: none of {', '.join(candidates)} found in {str(directory)!r}"
    msg += f"; did you mean {', '.join(near)}?" if near else f" (it holds: {', '.join(present[:12]) or 'nothing'})"
    raise DataFileError(msg)


#: what reading a damaged ``.gz`` file raises: a truncated stream, a file that is not gzip, corrupt data
GZIP_ERRORS = (EOFError, gzip.BadGzipFile, zlib.error)


def gzip_error(path: Path, exc: BaseException) -> DataFileError:
    """A :class:`DataFileError` for a ``.gz`` file that is truncated or not gzip at all."""
    what = "is truncated" if isinstance(exc, EOFError) else "is not a valid gzip file"
    return DataFileError(f"{path}: the compressed file {what} ({shorten(str(exc), 80)}); download it again, "
                         "or decompress it and name the plain file")


def _open_binary(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")  # type: ignore[return-value]


def locate_decode_error(path: Path, encoding: str) -> tuple[int, int, str]:
    """``(line, byte offset, reason)`` of the first bytes of ``path`` that do not decode."""
    offset = 0
    decoder_name = encoding
    with _open_binary(path) as fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                raw.decode(decoder_name)
            except UnicodeDecodeError as exc:
                return lineno, offset + exc.start, exc.reason
            offset += len(raw)
    return 0, offset, "unknown"


def encoding_error(path: Path, encoding: str, *, option: str = "encoding") -> DataFileError:
    """A :class:`DataFileError` naming where ``path`` stops being valid ``encoding``."""
    line, offset, reason = locate_decode_error(path, encoding)
    other = "latin-1" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else "utf-8"
    return DataFileError(
        f"{path}: line {line} (byte offset {offset}) is not valid {encoding} ({reason}); "
        f"pass the file's encoding, e.g. --dataset-param {option}={other}"
    )


_LINE = re.compile(r"line (\d+)")


def read_delimited(
    path: Path,
    *,
    sep: str,
    names: Sequence[str] | None = None,
    header: bool = True,
    encoding: str = "utf-8",
    quoting: int = csv.QUOTE_MINIMAL,
    usecols: Sequence[int] | Sequence[str] | None = None,
    what: str = "data file",
    encoding_option: str = "encoding",
    numeric: Sequence[str] = (),
) -> pd.DataFrame:
    """Read a delimited text file as strings; the index is the 1-based line number of each row.

    Blank lines are dropped. Rows with too many fields are errors naming the line; rows with
    too few show up as missing values, which :func:`require_values` reports by line.
    ``numeric`` columns are parsed as float64 directly (much less memory for big files);
    if one holds a non-number the file is read again as text so the error can name the line.
    """
    require_file(path, what=what)
    engine = "c" if len(sep) == 1 else "python"
    dtype: Any = defaultdict(lambda: str, {c: "float64" for c in numeric}) if numeric else str
    try:
        frame = pd.read_csv(
            path,
            sep=sep,
            names=list(names) if names is not None else None,
            header=0 if header else None,
            dtype=dtype,
            keep_default_na=False,
            na_values=[],
            encoding=encoding,
            quoting=quoting,
            usecols=list(usecols) if usecols is not None else None,
            skip_blank_lines=False,
            engine=engine,
            compression="infer",
        )
    except GZIP_ERRORS as exc:
        raise gzip_error(path, exc) from None
    except UnicodeDecodeError:
        raise encoding_error(path, encoding, option=encoding_option) from None
    except pd.errors.EmptyDataError:
        raise DataFileError(f"{what}: {path} is empty") from None
    except pd.errors.ParserError as exc:
        m = _LINE.search(str(exc))
        where = f"line {m.group(1)}" if m else "a row"
        raise DataFileError(f"{path}: {where} is malformed ({shorten(str(exc), 120)}); fix or remove that row") from None
    except ValueError as exc:
        if numeric:
            return read_delimited(path, sep=sep, names=names, header=header, encoding=encoding, quoting=quoting,
                                  usecols=usecols, what=what, encoding_option=encoding_option)
        m = _LINE.search(str(exc))
        where = f"line {m.group(1)}" if m else "a row"
        raise DataFileError(f"{path}: {where} is malformed ({shorten(str(exc), 120)}); fix or remove that row") from None
    except LookupError as exc:
        raise DataFileError(f"{what}: {exc}; pass a known encoding (e.g. utf-8, latin-1)") from None
    frame.index = np.arange(len(frame)) + (2 if header else 1)
    # pandas reads a blank line as a row of empty strings (or NaN under names=): drop those
    if len(frame):
        blank = np.ones(len(frame), dtype=bool)
        for col in frame.columns:
            values = frame[col]
            blank &= (values.isna() | (values == "")).to_numpy() if values.dtype != np.float64 else values.isna().to_numpy()
            if not blank.any():
                break
        if blank.any():
            frame = frame[~blank]
    frame.columns = [str(c).strip().strip('"') for c in frame.columns]
    return frame


def require_columns(frame: pd.DataFrame, columns: Sequence[str], *, path: Path | str, option: str = "") -> None:
    """Error naming ``path`` and each missing column, with the columns that are there."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        near = {c: closest(c, map(str, frame.columns)) for c in missing}
        hints = "; ".join(f"{c!r}: did you mean {', '.join(map(repr, n))}?" for c, n in near.items() if n)
        msg = f"{path}: missing column(s) {', '.join(map(repr, missing))} (columns present: {', '.join(map(str, frame.columns))})"
        if hints:
            msg += f"; {hints}"
        if option:
            msg += f"; {option}"
        raise DataFileError(msg)


#: cell texts that spreadsheets and pandas write for a missing value; never taken for an id
MISSING_MARKERS = frozenset({"nan", "NaN", "NAN", "NA", "N/A", "n/a", "null", "NULL", "None", "none", "<NA>", "NaT"})


def require_values(frame: pd.DataFrame, columns: Sequence[str], *, path: Path | str) -> None:
    """Error naming the first line where one of ``columns`` is missing, empty or a missing-value marker (``NaN``, ``NULL``, ...)."""
    for col in columns:
        values = frame[col]
        bad = values.isna().to_numpy().copy()
        if values.dtype != np.float64:
            text = values.astype(str).str.strip()
            bad |= (text == "").to_numpy()
            marker = text.isin(MISSING_MARKERS).to_numpy() & ~bad
            if marker.any():
                pos = int(np.argmax(marker))
                raise DataFileError(
                    f"{path}: line {frame.index[pos]}: column {col!r} holds {values.iloc[pos]!r}, a missing-value marker, "
                    "not an id; drop the row or give the id"
                )
        if bad.any():
            line = frame.index[int(np.argmax(bad))]
            raise DataFileError(f"{path}: line {line}: column {col!r} is empty or the row has too few fields")


def to_number(values: pd.Series, *, path: Path | str, column: str, integer: bool = False) -> np.ndarray:
    """Convert strings to float64 (or int64); the first value that is not a number is an error by line."""
    num = pd.to_numeric(values, errors="coerce")
    bad = num.isna().to_numpy()
    if bad.any():
        pos = int(np.argmax(bad))
        raise DataFileError(
            f"{path}: line {values.index[pos]}: column {column!r} holds {values.iloc[pos]!r}, which is not a number"
        )
    arr = num.to_numpy(dtype=np.float64)
    _require_finite(arr, values, path=path, column=column, integer=integer)
    if integer:
        return np.floor(arr).astype(np.int64)
    return arr


#: integers must lie strictly inside int64's range once read as float64 (2**63 itself is not an int64)
INT64_BOUND = float(2**63)


def _require_finite(arr: np.ndarray, values: pd.Series, *, path: Path | str, column: str, integer: bool) -> None:
    """Error naming the first line whose number is not finite (or, as an integer, beyond int64)."""
    bad = ~np.isfinite(arr)
    if integer:
        bad |= np.abs(np.nan_to_num(arr, nan=0.0, posinf=0.0, neginf=0.0)) >= INT64_BOUND
    if bad.any():
        pos = int(np.argmax(bad))
        kind = "a finite integer within int64 (|x| < 2**63)" if integer else "a finite number"
        raise DataFileError(f"{path}: line {values.index[pos]}: column {column!r} holds {short_repr(values.iloc[pos], 40)}, "
                            f"which is not {kind}")


def to_seconds(values: pd.Series, *, path: Path | str, column: str) -> np.ndarray:
    """Timestamps as int64 seconds: numbers are Unix seconds, other strings are parsed as dates (UTC)."""
    num = pd.to_numeric(values, errors="coerce")
    is_num = num.notna().to_numpy()
    out = np.zeros(len(values), dtype=np.int64)
    numbers = num.to_numpy(dtype=np.float64)[is_num]
    _require_finite(numbers, values[is_num], path=path, column=column, integer=True)
    out[is_num] = np.floor(numbers).astype(np.int64)
    if not is_num.all():
        text = values[~is_num]
        parsed = pd.to_datetime(text, errors="coerce", utc=True, format="mixed")
        bad = parsed.isna().to_numpy()
        if bad.any():
            pos = int(np.argmax(bad))
            raise DataFileError(
                f"{path}: line {text.index[pos]}: column {column!r} holds {short_repr(text.iloc[pos], 40)}, "
                "which is neither a Unix time nor a date"
            )
        out[~is_num] = parsed.astype("datetime64[s, UTC]").astype("int64").to_numpy(dtype=np.int64)
    return out


def iter_json_lines(path: Path, *, encoding: str = "utf-8", what: str = "JSON lines file") -> Iterator[tuple[int, dict]]:
    """``(line number, object)`` for each non-blank line; a bad line is an error naming it."""
    require_file(path, what=what)
    try:
        yield from _json_objects(path, encoding)
    except GZIP_ERRORS as exc:
        raise gzip_error(path, exc) from None


def _json_objects(path: Path, encoding: str) -> Iterator[tuple[int, dict]]:
    with _open_binary(path) as fh:
        for lineno, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                text = raw.decode(encoding)
            except UnicodeDecodeError:
                raise encoding_error(path, encoding) from None
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                raise DataFileError(f"{path}: line {lineno}, column {exc.colno}: not valid JSON ({exc.msg})") from None
            if not isinstance(obj, dict):
                raise DataFileError(f"{path}: line {lineno}: expected a JSON object, got {type(obj).__name__}")
            yield lineno, obj


def read_json_lines(
    path: Path, fields: Sequence[str], *, required: Sequence[str] = (), encoding: str = "utf-8", what: str = "JSON lines file"
) -> pd.DataFrame:
    """Read ``fields`` of each JSON object of ``path`` into a frame indexed by line number.

    Uses pandas' chunked JSON reader; a chunk that fails is re-read line by line so the
    error names the bad line. ``required`` fields missing from a line are errors.
    """
    require_file(path, what=what)
    parts: list[pd.DataFrame] = []
    try:
        with _open_binary(path) as raw:
            text = io.TextIOWrapper(raw, encoding=encoding)
            start = 1
            while True:
                lines = []
                for _ in range(JSON_CHUNK):
                    line = text.readline()
                    if not line:
                        break
                    lines.append(line)
                if not lines:
                    break
                parts.append(_json_chunk(lines, start, fields, path))
                start += len(lines)
    except GZIP_ERRORS as exc:
        raise gzip_error(path, exc) from None
    except UnicodeDecodeError:
        raise encoding_error(path, encoding) from None
    frame = pd.concat(parts) if parts else pd.DataFrame(columns=list(fields))
    for col in fields:
        if col not in frame.columns:
            frame[col] = None
    frame = frame[list(fields)]
    if not len(frame):
        raise DataFileError(f"{what}: {path} is empty")
    for col in required:
        missing = frame[col].isna().to_numpy()
        if missing.all():
            raise DataFileError(f"{path}: no line has the field {col!r} (is this the right file?)")
        if missing.any():
            raise DataFileError(f"{path}: line {frame.index[int(np.argmax(missing))]}: field {col!r} is missing")
    return frame


def _json_chunk(lines: list[str], start: int, fields: Sequence[str], path: Path) -> pd.DataFrame:
    keep = [(start + k, ln) for k, ln in enumerate(lines) if ln.strip()]
    if not keep:
        return pd.DataFrame(columns=list(fields))
    try:
        frame = pd.read_json(io.StringIO("".join(ln for _, ln in keep)), lines=True, dtype=False)
        if len(frame) != len(keep):
            raise ValueError("row count mismatch")
    except (ValueError, TypeError):
        for lineno, ln in keep:
            try:
                obj = json.loads(ln)
            except json.JSONDecodeError as exc:
                raise DataFileError(f"{path}: line {lineno}, column {exc.colno}: not valid JSON ({exc.msg})") from None
            if not isinstance(obj, dict):
                raise DataFileError(f"{path}: line {lineno}: expected a JSON object, got {type(obj).__name__}") from None
        rows = [json.loads(ln) for _, ln in keep]
        frame = pd.DataFrame.from_records([{f: r.get(f) for f in fields} for r in rows])
    frame = frame[[c for c in fields if c in frame.columns]]
    frame.index = np.array([n for n, _ in keep])
    return frame


def join_text(value: object) -> str:
    """Flatten a text field that may be a string, a list of strings or missing."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, (list, tuple)):
        return " ".join(join_text(v) for v in value if v is not None).strip()
    if isinstance(value, dict):
        return " ".join(f"{k}: {join_text(v)}" for k, v in value.items()).strip()
    return re.sub(r"\s+", " ", str(value)).strip()
