"""`crossbench show NAME` and `crossbench list KIND --params` print what runs and what tuning searches."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from crossbench.cli import CliState, cli
from crossbench.cli.show import format_range, param_table
from crossbench.plugin.build import component_space, default_values, make_recommender, own_space
from crossbench.plugin.specs import CategoricalParam, FloatParam, IntParam
from crossbench.train.settings import TRAINING_FIELDS, TRAINING_MEANINGS, TrainConfig


def _invoke(*args: str):
    return CliRunner().invoke(cli, list(args), obj=CliState())


def _rows(text: str) -> dict[str, list[str]]:
    """Table rows of `show` output: name -> cells (split on runs of two or more spaces)."""
    rows = {}
    for line in text.splitlines():
        if line.startswith("    ") and not line.startswith("    name "):
            cells = re.split(r"\s{2,}", line.strip())
            rows[cells[0]] = cells
    return rows


def test_ranges_are_written_as_tuning_samples_them():
    assert format_range(IntParam("layers", 1, 3)) == "[1, 3]"
    assert format_range(IntParam("n", 2, 8, log=True, step=2)) == "[2, 8] step 2 log"
    assert format_range(FloatParam("lr", 3e-4, 1e-2, log=True)) == "[0.0003, 0.01] log"
    assert format_range(CategoricalParam("dim", (32, 64, 128))) == "{32, 64, 128}"
    assert format_range(CategoricalParam("loss", ("bpr", "softmax"))) == "{'bpr', 'softmax'}"


def test_every_training_setting_has_a_meaning():
    assert set(TRAINING_MEANINGS) == set(TRAINING_FIELDS)
    assert all(TRAINING_MEANINGS[name] for name in TRAINING_FIELDS)


def test_lm_attention_params_list_every_hyperparameter_with_its_default_and_searched_range(registry):
    out = _invoke("list", "models", "--params")
    assert out.exit_code == 0, out.output
    block = out.stdout.split("\nlm-attention  (model, plugin zoo)\n", 1)[1].split("\n\n", 1)[0]
    rows = _rows(block)
    spec = registry.get("recommenders", "lm-attention")
    defaults = spec.hyperparameters()
    # every factory keyword, shared training settings included, with its default
    assert set(defaults) <= set(rows) and set(TRAINING_FIELDS) <= set(rows)
    for name, default in defaults.items():
        assert rows[name][2] == (repr(default) if isinstance(default, str) else str(default)), (name, rows[name])
    # the searched range of each parameter is the tuning search space: own space + components' under ROLE.NAME
    model = make_recommender(registry, "lm-attention", {}, where="test")
    space = own_space(registry, "lm-attention", {}) + component_space(registry, "lm-attention", model, {})
    assert {p.name for p in space} == {name for name, cells in rows.items() if cells[3] != "-"}
    for p in space:
        assert rows[p.name][3] == format_range(p), (p, rows[p.name])
    tuned_defaults = default_values(registry, "lm-attention", model, space)
    for key in ("user_encoder.heads", "fusion.heads"):
        assert rows[key][2] == str(tuned_defaults[key])
    # hand-read from the spec: a few rows in full
    assert rows["lr"][1:4] == ["float", "0.001", "[0.0003, 0.01] log"]
    assert rows["dim"][1:4] == ["int", "64", "{32, 64, 128}"]
    assert rows["n_experts"][1:4] == ["int", "4", "[2, 8] log"]
    assert rows["loss"][1:4] == ["str", "'full-softmax'", "-"]
    assert rows["user_encoder.heads"][1:4] == ["int", "2", "{1, 2, 4}"]
    assert rows["lr"][4] == TRAINING_MEANINGS["lr"]
    assert rows["fusion"][4] == spec.meanings["fusion"]
    assert TrainConfig().lr != float(rows["lr"][2])  # the model's own training defaults, not TrainConfig's


def test_show_prints_the_same_block_and_unknown_names_suggest(registry):
    listed = _invoke("list", "models", "--params").stdout
    shown = _invoke("show", "lm-attention")
    assert shown.exit_code == 0 and shown.stdout.strip() in listed
    table = param_table(registry, "recommenders", "mf")
    assert [r.name for r in table.own] == ["init_std"] and [r.name for r in table.training] == list(TRAINING_FIELDS)
    assert table.own[0].searched == "[0.005, 0.2] log" and table.own[0].default == "0.1"
    bad = _invoke("show", "lm-atention")
    assert bad.exit_code == 2 and "did you mean 'lm-attention'" in bad.stderr and bad.stdout == ""


@pytest.mark.parametrize("kind", ["datasets", "protocols", "metrics", "fusions", "feedback-models"])
def test_every_kind_lists_its_params(kind, registry):
    out = _invoke("list", kind, "--params")
    assert out.exit_code == 0, out.output
    first = next(iter(registry.entries(kind))).spec
    assert out.stdout.startswith(f"{first.name}  (")
    if kind == "protocols":
        assert re.search(r"^    test_fraction\s+float\s+0\.5\s+-", out.stdout, re.M)
    if kind == "metrics":
        assert "no hyperparameters" in out.stdout


def test_an_unknown_model_param_points_to_show():
    out = _invoke("run", "--model", "mf", "--model-param", "init_sd=0.1", "-q")
    assert out.exit_code == 2
    assert "did you mean 'init_std'" in out.stderr and "`crossbench show MODEL`" in out.stderr
