"""Downloads from a local HTTP server: checksum, resume, cache, and the data loads afterwards."""

from __future__ import annotations

import hashlib
import io
import threading
import types
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from crossbench import hookimpl
from crossbench.cli.data import data_group
from crossbench.data.fetch import Download, FetchError, fetch
from crossbench.plugin.manager import get_plugin_manager
from crossbench.plugin.registry import Registry
from crossbench.plugin.specs import ComponentSpec


def ml1m_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        movies = "".join(f"{m}::Movie {m} (1999)::{'Comedy' if m % 2 else 'Drama'}\n" for m in range(1, 21))
        zf.writestr("ml-1m/movies.dat", movies.encode("latin-1"))
        ratings = "".join(f"{u}::{m}::{1 + (u * m) % 5}::{978300000 + u * 100 + m}\n" for u in range(1, 40) for m in range(1, 21))
        zf.writestr("ml-1m/ratings.dat", ratings)
        zf.writestr("ml-1m/README", "MovieLens 1M (test copy)\n" * 200)
    return buf.getvalue()


class Server:
    """A tiny HTTP server with Range support that can cut its first response short."""

    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self.ranges: list[str | None] = []
        self.cut_after: int | None = None
        self.honour_range = True
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server API
                rng = self.headers.get("Range")
                server.ranges.append(rng)
                body, status = server.payload, 200
                if rng and server.honour_range:
                    start = int(rng.split("=")[1].split("-")[0])
                    if start >= len(body):
                        self.send_response(416)
                        self.end_headers()
                        return
                    body, status = body[start:], 206
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.cut_after is not None:
                    self.wfile.write(body[: server.cut_after])
                    server.cut_after = None
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/ml-1m.zip"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def server() -> Iterator[Server]:
    s = Server(ml1m_zip())
    yield s
    s.close()


def download_for(server: Server, **kw: object) -> Download:
    return Download(url=server.url, filename="ml-1m.zip", subdir="ml-1m", **kw)  # type: ignore[arg-type]


def quiet(msg: str) -> None:
    pass


def test_fetch_verifies_published_md5_extracts_and_caches(server: Server, tmp_path: Path) -> None:
    md5 = hashlib.md5(server.payload).hexdigest()
    path = fetch("ml", download_for(server, md5=md5), cache_dir=tmp_path, progress=False, log=quiet)
    assert path == tmp_path / "datasets" / "ml" / "data" / "ml-1m"
    assert sorted(p.name for p in path.iterdir()) == ["README", "movies.dat", "ratings.dat"]
    assert (tmp_path / "datasets" / "ml" / "ml-1m.zip").read_bytes() == server.payload
    assert not list(tmp_path.rglob("*.part"))
    assert server.ranges == [None]
    fetch("ml", download_for(server, md5=md5), cache_dir=tmp_path, progress=False, log=quiet)
    assert server.ranges == [None]  # cached: no second request
    from crossbench_datasets import movielens

    data = movielens(path=str(path), domains=("Comedy", "Drama")).load()
    assert data.n_users == 39 and data.domain("Comedy").n_items == 10


def test_interrupted_download_resumes_with_range(server: Server, tmp_path: Path) -> None:
    md5 = hashlib.md5(server.payload).hexdigest()
    server.cut_after = 1000
    with pytest.raises(FetchError, match=r"download interrupted .*1000 bytes kept in .*ml-1m\.zip\.part; run the command again"):
        fetch("ml", download_for(server, md5=md5), cache_dir=tmp_path, progress=False, retries=0, log=quiet)
    part = tmp_path / "datasets" / "ml" / "ml-1m.zip.part"
    assert part.stat().st_size == 1000
    assert not (tmp_path / "datasets" / "ml" / "data").exists()  # nothing half-extracted
    fetch("ml", download_for(server, md5=md5), cache_dir=tmp_path, progress=False, retries=0, log=quiet)
    assert server.ranges == [None, "bytes=1000-"]
    assert (tmp_path / "datasets" / "ml" / "ml-1m.zip").read_bytes() == server.payload
    assert not part.exists()


def test_resume_within_one_call_and_server_without_range(server: Server, tmp_path: Path) -> None:
    md5 = hashlib.md5(server.payload).hexdigest()
    server.cut_after = 777
    fetch("a", download_for(server, md5=md5), cache_dir=tmp_path, progress=False, log=quiet)
    assert server.ranges == [None, "bytes=777-"]
    server.ranges.clear()
    server.cut_after, server.honour_range = 500, False
    fetch("b", download_for(server, md5=md5), cache_dir=tmp_path, progress=False, log=quiet)
    assert server.ranges == [None, "bytes=500-"]  # the server answered 200: started over
    assert (tmp_path / "datasets" / "b" / "ml-1m.zip").read_bytes() == server.payload


def test_checksum_mismatch_keeps_nothing(server: Server, tmp_path: Path) -> None:
    with pytest.raises(FetchError, match=r"md5 is [0-9a-f]{32}, expected 0{32} \(published\)"):
        fetch("ml", download_for(server, md5="0" * 32), cache_dir=tmp_path, progress=False, log=quiet)
    assert sorted(p.name for p in (tmp_path / "datasets" / "ml").iterdir()) == []


def test_checksum_recorded_on_first_download_then_enforced(server: Server, tmp_path: Path) -> None:
    said: list[str] = []
    fetch("ml", download_for(server), cache_dir=tmp_path, progress=False, log=said.append)
    recorded = tmp_path / "datasets" / "ml" / "ml-1m.zip.sha256"
    assert recorded.read_text().split()[0] == hashlib.sha256(server.payload).hexdigest()
    assert "no checksum is published" in said[-1]
    (tmp_path / "datasets" / "ml" / "ml-1m.zip").unlink()
    server.payload = server.payload + b"changed upstream"
    with pytest.raises(FetchError, match=r"was recorded on first download"):
        fetch("ml", download_for(server), cache_dir=tmp_path, progress=False, log=quiet)


def test_cli_fetch_uses_the_dataset_downloads_and_cache_env(server: Server, tmp_path: Path, monkeypatch) -> None:
    md5 = hashlib.md5(server.payload).hexdigest()

    def local_ml(*, path: str | None = None) -> object:
        raise AssertionError("not loaded by fetch")

    local_ml.downloads = (download_for(server, md5=md5),)  # type: ignore[attr-defined]

    class Plugin:
        @hookimpl
        def crossbench_datasets(self) -> list[ComponentSpec]:
            return [ComponentSpec("local-ml", local_ml, "test download")]

    registry = Registry(get_plugin_manager([Plugin()]))
    monkeypatch.setenv("CROSSBENCH_CACHE", str(tmp_path / "cache"))
    result = CliRunner().invoke(data_group, ["fetch", "local-ml"], obj=types.SimpleNamespace(registry=registry))
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(tmp_path / "cache" / "datasets" / "local-ml" / "data" / "ml-1m")
    assert "ml-1m.zip" in result.stderr and "matches the published checksum" in result.stderr
    result = CliRunner().invoke(data_group, ["fetch", "douban"], obj=types.SimpleNamespace(registry=registry))
    assert result.exit_code == 2 and "has no public download" in result.output and "local-ml" in result.output


def test_movielens_1m_reads_from_the_cache_or_says_how_to_fetch(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CROSSBENCH_CACHE", str(tmp_path))
    registry = Registry(get_plugin_manager())
    spec = registry.get("datasets", "movielens-1m")
    from crossbench.data.io import DataFileError

    with pytest.raises(DataFileError, match=r"does not exist; download it with `crossbench data fetch movielens-1m`"):
        spec.factory().load()
    target = tmp_path / "datasets" / "movielens-1m" / "data"
    with zipfile.ZipFile(io.BytesIO(ml1m_zip())) as zf:
        zf.extractall(target)
    data = spec.factory(domains="Comedy,Drama").load()
    assert data.n_users == 39 and data.domain_names == ["Comedy", "Drama"]
    assert spec.factory.downloads[0].md5 == "c4d9eecfca2ab87c1945afe126590906"
