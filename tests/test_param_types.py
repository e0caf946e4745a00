"""Parameters converted to the types their factories declare, repeated and empty lists refused,
Ctrl-C exits 130: each mistake is one line and exit 2, before any work, with nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

import crossbench.run.runner as runner
from crossbench.cli import CliState, cli
from crossbench.errors import CrossbenchError
from crossbench.plugin.build import make_recommender
from crossbench.plugin.manager import get_plugin_manager
from crossbench.plugin.params import coerce_kwargs
from crossbench.plugin.registry import Registry
from crossbench.plugin.specs import ComponentSpec

REGISTRY = Registry(get_plugin_manager())
SMALL = ["--dataset-param", "n_users=300", "--dataset-param", "n_items=60", "-q"]


def invoke(args: list[str]):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(cli, args, obj=CliState())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "mf", "--model-param", "dim=abc"], "parameter 'dim' expects int, got 'abc'"),
        (["--model", "mf", "--model-param", "lr=fast"], "parameter 'lr' expects float, got 'fast'"),
        (["--model", "mf", "--model-param", "dim=3.5"], "parameter 'dim' expects int, got 3.5"),
        (["--model", "lm-attention", "--model-param", "item_ids=maybe"], "parameter 'item_ids' expects bool, got 'maybe'"),
        (["--model", "mf", "--dataset-param", "n_users=abc"], "dataset 'synthetic': parameter 'n_users' expects int"),
        (["--model", "mf", "--seeds", "0,0"], "seed(s) 0 given more than once"),
        (["--model", "mf", "--ks", "10,10"], "cut-off(s) 10 given more than once"),
        (["--model", "mf", "--seeds", ""], "--seeds '': no values given"),
        (["--model", "mf", "--ks", ""], "--ks '': no values given"),
        (["--model", "mf", "--metrics", ""], "--metrics '': no values given"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path: Path, args: list[str], message: str) -> None:
    out_dir = tmp_path / "results"
    out = invoke(["run", *args, "--output", str(out_dir)])
    lines = [ln for ln in out.output.splitlines() if ln.strip()]
    assert out.exit_code == 2, out.output
    assert len(lines) == 1 and lines[0].startswith("crossbench: error: ") and message in lines[0], out.output
    assert "Traceback" not in out.output
    assert not out_dir.exists()


def test_strings_of_the_declared_type_are_converted() -> None:
    model = make_recommender(REGISTRY, "lm-attention", {"item_ids": "False", "dim": "32", "lr": "0.002"}, where="model")
    described = model.describe()
    assert described["components"]["item-encoders"]["name"] == "text"  # "False" is False, not a truthy string
    assert described["training"]["dim"] == 32 and described["training"]["lr"] == 0.002
    composed = make_recommender(REGISTRY, "composed", {"dim": "16", "fusion.heads": "2", "fusion": "attention"}, where="m")
    assert composed.describe()["training"]["dim"] == 16
    assert composed.describe()["components"]["fusions"]["params"] == {"heads": 2}


def test_conversion_follows_the_annotation() -> None:
    def factory(*, flag: bool = True, n: int = 1, x: float = 0.5, name: str = "a", maybe: int | None = None) -> None:
        return None

    spec = ComponentSpec("toy", factory)
    got = coerce_kwargs(spec, {"flag": "TRUE", "n": "7", "x": 2, "name": "b", "maybe": None}, where="toy")
    assert got == {"flag": True, "n": 7, "x": 2.0, "name": "b", "maybe": None}
    assert isinstance(got["x"], float)
    with pytest.raises(CrossbenchError, match=r"toy: parameter 'n' expects int, got True \(bool\)"):
        coerce_kwargs(spec, {"n": True}, where="toy")
    with pytest.raises(CrossbenchError, match=r"parameter 'flag' expects bool, got 1"):
        coerce_kwargs(spec, {"flag": 1}, where="toy")


def test_ctrl_c_exits_130_with_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "run_experiment", interrupted)
    out = invoke(["run", "--model", "popularity", *SMALL, "--output", str(tmp_path / "r")])
    assert out.exit_code == 130, out.output
    lines = [ln for ln in out.output.splitlines() if ln.strip()]
    assert lines == ["crossbench: interrupted; finished runs are kept, the same command resumes"]


def test_safe_names_stay_inside_and_distinct() -> None:
    from crossbench.run.runner import record_file, safe_name

    assert safe_name("mf") == "mf" and safe_name("cd-attention") == "cd-attention"  # plain names unchanged
    a, b, up = safe_name("模型"), safe_name("实验"), safe_name("../../x")
    assert a != b and a.startswith("name-") and len(a) == len("name-") + 8
    assert up.startswith("x-") and "/" not in up and ".." not in up
    assert safe_name("my model") != safe_name("my-model")
    assert record_file("drama", "模型", 0) != record_file("drama", "实验", 0)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "popularity", "--sampled", "0"], "--sampled 0: give a positive number"),
        (["--model", "popularity", "--sampling", "popularity"], "--sampling popularity only applies to sampled evaluation"),
    ],
)
def test_sampled_options_that_would_be_ignored_are_refused(tmp_path: Path, args: list[str], message: str) -> None:
    out = invoke(["run", *args, *SMALL, "--output", str(tmp_path / "r")])
    assert out.exit_code == 2 and message in out.output and "Traceback" not in out.output
    assert not (tmp_path / "r").exists()


def test_output_that_is_a_file_is_refused_before_any_work(tmp_path: Path) -> None:
    target = tmp_path / "taken.txt"
    target.write_text("keep me")
    out = invoke(["run", "--model", "popularity", *SMALL, "--output", str(target)])
    assert out.exit_code == 2 and "is an existing file, not a folder" in out.output
    assert target.read_text() == "keep me"


def test_unicode_labels_and_a_climbing_name_stay_in_the_results_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "exp.toml").write_text(
        'name = "../../escape"\nseeds = [0]\n[dataset]\nname = "synthetic"\nn_users = 300\nn_items = 60\n'
        '[[models]]\nname = "popularity"\nlabel = "模型"\n[[models]]\nname = "popularity"\nlabel = "实验"\n',
        encoding="utf-8",
    )
    out = invoke(["run", str(tmp_path / "exp.toml"), "-q"])
    assert out.exit_code == 0, out.output
    (folder,) = (tmp_path / "crossbench-results").iterdir()
    assert folder.name.startswith("escape-")
    records = sorted(p.name for p in (folder / "runs").glob("*.json"))
    assert len(records) == 2 and len(set(records)) == 2
    assert not (tmp_path.parent / "escape").exists()
