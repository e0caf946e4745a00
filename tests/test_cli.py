"""The command line: help, bad input, and a plugin fusion used end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from crossbench import hookimpl
from crossbench.cli import CliState, cli
from crossbench.plugin.interfaces import Fusion
from crossbench.plugin.specs import ComponentSpec

SMALL = ["--dataset-param", "n_users=400", "--dataset-param", "n_items=120", "--seeds", "0", "-q"]


def invoke(args, state=None):
    return CliRunner().invoke(cli, args, obj=state or CliState())


@pytest.mark.parametrize(
    "args",
    [[], ["run"], ["list"], ["plugins"], ["leaderboard"], ["data"], ["data", "fetch"], ["data", "stats"]],
)
def test_help_on_every_command(args):
    out = invoke([*args, "--help"])
    assert out.exit_code == 0
    assert "Usage:" in out.output


def error_line(out):
    lines = [ln for ln in out.output.splitlines() if ln.strip()]
    assert len(lines) == 1, out.output
    return lines[0]


def test_unknown_dataset_and_model(tmp_path):
    out = invoke(["run", "--dataset", "synthetc", "--output", str(tmp_path / "r")])
    assert out.exit_code == 2
    assert "unknown dataset 'synthetc'; did you mean 'synthetic'?" in error_line(out)
    out = invoke(["run", "--model", "shared-meen", "--output", str(tmp_path / "r")])
    assert out.exit_code == 2
    assert "did you mean 'shared-mean'" in error_line(out)
    assert not (tmp_path / "r").exists()


def test_bad_parameters_and_options(tmp_path):
    out = invoke(["run", "--dataset-param", "n_user=10", "--output", str(tmp_path / "r")])
    assert out.exit_code == 2 and "did you mean 'n_users'" in error_line(out)
    out = invoke(["run", "--model", "mf", "--model-param", "dimm=8", "--output", str(tmp_path / "r")])
    assert out.exit_code == 2 and "'dimm'" in error_line(out)
    out = invoke(["run", "--protocol-param", "test_fracton=0.2", "--output", str(tmp_path / "r")])
    assert out.exit_code == 2 and "did you mean 'test_fraction'" in error_line(out)
    out = invoke(["run", "--seeds", "a,b", "--output", str(tmp_path / "r")])
    assert out.exit_code == 2 and "--seeds" in error_line(out)
    out = invoke(["run", "--no-such-option"])
    assert out.exit_code == 2 and "No such option" in out.output
    out = invoke(["run", "--dataset-param", "transfer=2.0", *SMALL, "--output", str(tmp_path / "r")])
    assert out.exit_code == 2 and "transfer must be in [0, 1]" in error_line(out)
    out = invoke(["run", "--target", "musc", *SMALL, "--output", str(tmp_path / "r")])
    assert out.exit_code == 2 and "'musc'" in error_line(out)
    assert not (tmp_path / "r").exists()


def test_malformed_experiment_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\n[dataset\nname = "synthetic"\n')
    out = invoke(["run", str(bad), "--output", str(tmp_path / "r")])
    assert out.exit_code == 2
    line = error_line(out)
    assert str(bad) in line and "malformed TOML" in line and "line 2" in line
    typo = tmp_path / "typo.toml"
    typo.write_text('[[model]]\nname = "mf"\n')
    out = invoke(["run", str(typo)])
    assert out.exit_code == 2 and "unknown key 'model'; did you mean 'models'?" in error_line(out)
    missing = tmp_path / "none.toml"
    out = invoke(["run", str(missing)])
    assert out.exit_code == 2 and "does not exist" in error_line(out)
    assert not (tmp_path / "r").exists()


class CountingFusion(Fusion):
    """Target vector plus the source vectors, with a call counter."""

    calls = 0

    def __init__(self, *, weight: float) -> None:
        super().__init__()
        self.weight = weight

    def forward(self, vectors, present, target):
        CountingFusion.calls += 1
        out = vectors[target].clone()
        for d, v in vectors.items():
            if d != target:
                out = out + self.weight * v * present[d].unsqueeze(-1).to(v.dtype)
        return out


class FusionPlugin:
    @hookimpl
    def crossbench_fusions(self):
        return [ComponentSpec("test-sum", lambda *, context, weight=1.0: CountingFusion(weight=weight), "sum of domains")]


def test_plugin_fusion_used_by_run(tmp_path):
    exp = tmp_path / "exp.toml"
    exp.write_text(
        """
name = "plugin-fusion"
seeds = [0]
ks = [5]
metrics = ["ndcg", "recall"]

[dataset]
name = "synthetic"
n_users = 400
n_items = 120

[protocol]
name = "cold-start"
target = "movies"
test_fraction = 0.3

[[models]]
name = "composed"
label = "sum-fusion"
fusion = { name = "test-sum", weight = 0.5 }
dim = 16
epochs = 2
"""
    )
    CountingFusion.calls = 0
    state = CliState(extra_plugins=[FusionPlugin()])
    out = invoke(["run", str(exp), "--output", str(tmp_path / "res"), "-q"], state)
    assert out.exit_code == 0, out.output
    assert CountingFusion.calls > 0
    assert "sum-fusion" in out.output
    (record_file,) = (tmp_path / "res" / "runs").glob("*.json")
    record = json.loads(record_file.read_text())
    assert record["model"]["description"]["components"]["fusions"] == {"name": "test-sum", "params": {"weight": 0.5}}
    assert record["protocol"]["n_test_users"] > 0
    assert 0.0 <= record["evaluation"]["metrics"]["ndcg@5"] <= 1.0
    # the registered fusion is listed with its in-process plugin
    out = invoke(["list", "fusions"], state)
    assert "test-sum" in out.output and "FusionPlugin" in out.output


def test_run_record_contents_and_leaderboard_regeneration(tmp_path):
    res = tmp_path / "res"
    out = invoke(["run", "--model", "popularity", *SMALL, "--threads", "1", "--output", str(res)])
    assert out.exit_code == 0, out.output
    (record_file,) = (res / "runs").glob("*.json")
    record = json.loads(record_file.read_text())
    assert record["threads"] == 1 and record["timings"]["fit_threads"] is None  # popularity has no training loop
    assert record["device"] == "cpu"
    assert len(record["dataset"]["fingerprint"]) == 64 and len(record["protocol"]["split_fingerprint"]) == 64
    assert record["environment"]["torch"] == torch.__version__
    per_user = res / "runs" / record["evaluation"]["per_user"]["path"]
    import hashlib

    assert hashlib.sha256(per_user.read_bytes()).hexdigest() == record["evaluation"]["per_user"]["sha256"]
    board = (res / "leaderboard.md").read_text()
    assert "| popularity" in board
    # regenerating from the records gives the same table, and --check agrees
    out = invoke(["leaderboard", str(res), "--check", str(res / "leaderboard.md")])
    assert out.exit_code == 0, out.output
    (res / "leaderboard.md").write_text(board.replace("popularity", "pop"))
    out = invoke(["leaderboard", str(res), "--check", str(res / "leaderboard.md")])
    assert out.exit_code == 2 and "out of date" in out.output
    assert not list(tmp_path.glob(".res.staging-*"))


class Listener:
    seen: list = []

    @hookimpl
    def crossbench_run_finished(self, record, path):
        Listener.seen.append((record["model"]["label"], path.exists()))


def test_run_finished_hook_sees_published_records(tmp_path):
    Listener.seen = []
    out = invoke(["run", "--model", "popularity", *SMALL, "--output", str(tmp_path / "r")], CliState(extra_plugins=[Listener()]))
    assert out.exit_code == 0, out.output
    assert Listener.seen == [("popularity", True)]


def test_sampled_evaluation_is_labelled_and_kept_apart(tmp_path):
    out = invoke(["run", "--model", "popularity", *SMALL, "--sampled", "50", "--output", str(tmp_path / "s")])
    assert out.exit_code == 0, out.output
    (record_file,) = (tmp_path / "s" / "runs").glob("*.json")
    rec = json.loads(record_file.read_text())
    assert rec["evaluation"]["mode"] == "sampled"
    assert rec["evaluation"]["sampling"]["n_negatives"] == 50 and len(rec["evaluation"]["sampling"]["sha256"]) == 64
    assert all(key.endswith(":sampled-uniform-50") for key in rec["evaluation"]["metrics"])
    board = (tmp_path / "s" / "leaderboard.md").read_text()
    assert "sampled: 50 uniform negatives" in board and "SAMPLED evaluation" in board
    # a full-ranking run of the same model goes into a separate table, never the same one
    out = invoke(["run", "--model", "popularity", *SMALL, "--output", str(tmp_path / "f")])
    full = json.loads(next((tmp_path / "f" / "runs").glob("*.json")).read_text())
    from crossbench.report.leaderboard import render_markdown

    text = render_markdown([rec, full])
    assert text.count("## synthetic") == 2
    bad = invoke(["run", "--model", "popularity", *SMALL, "--sampled", "50", "--metrics", "ndcg,coverage"])
    assert bad.exit_code == 2 and "need the full ranking" in error_line(bad)


def test_beyond_accuracy_columns_and_groups(tmp_path):
    out = invoke(["run", "--model", "popularity", *SMALL, "--metrics", "ndcg,coverage,gini", "--ks", "10",
                  "--output", str(tmp_path / "b")])
    assert out.exit_code == 0, out.output
    rec = json.loads(next((tmp_path / "b" / "runs").glob("*.json")).read_text())
    metrics = rec["evaluation"]["metrics"]
    # popularity recommends the same 10 items to everyone, up to items tied with the 10th
    from crossbench.plugin.build import make_protocol
    from crossbench_synthetic import synthetic

    split = make_protocol(CliState().registry, "cold-start", target="movies", seed=0, test_fraction=0.5, valid_fraction=0.1).split(
        synthetic(n_users=400, n_items=120).load()
    )
    counts = np.sort(np.bincount(split.train.domain("movies").interactions["item"], minlength=120))[::-1]
    n_tied_or_above = int((counts >= counts[9]).sum())
    assert 10 / 120 <= metrics["coverage@10"] <= n_tied_or_above / 120
    assert round(metrics["coverage@10"] * 120, 9).is_integer()
    assert rec["evaluation"]["lower_is_better"] == ["gini@10"]
    groups = rec["evaluation"]["user_groups"]
    assert groups["cold"]["n_users"] == rec["protocol"]["n_test_users"] and "warm" not in groups
