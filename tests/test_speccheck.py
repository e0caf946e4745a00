"""Registration checks of a spec against its kind's contract: one message per defect, naming it."""

from __future__ import annotations

import pytest

from crossbench.plugin.checks import spec_problems
from crossbench.plugin.specs import CategoricalParam, ComponentSpec, FloatParam, IntParam, MetricSpec


def fusion(*, context, hidden: int = 8, rate: float = 0.1, mode: str = "a", flag: bool = False):
    return None


def encoder(*, context, domain, dim: int = 4):
    return None


def check(kind, factory, *space):
    return spec_problems(kind, ComponentSpec("x", factory, "", tuple(space)))


def test_good_specs_pass():
    assert check("fusions", fusion, IntParam("hidden", 4, 64, log=True), FloatParam("rate", 0.0, 0.5),
                 CategoricalParam("mode", ("a", "b")), CategoricalParam("flag", (True, False))) == []
    assert check("item-encoders", encoder, CategoricalParam("dim", (2, 4))) == []
    assert check("datasets", lambda *, path: None) == []  # a dataset may require its path
    assert spec_problems("metrics", MetricSpec("m", lambda ranks, n, k: ranks)) == []


@pytest.mark.parametrize(
    "kind, factory, space, expected",
    [
        ("fusions", lambda *, hidden=8: None, (), "does not accept keyword(s) 'context'"),
        ("item-encoders", lambda *, context: None, (), "does not accept keyword(s) 'domain'"),
        ("scorers", lambda *, context, width: None, (), "requires 'width' without a default"),
        ("recommenders", lambda dim=8, /: None, (), "takes 'dim' by position only"),
        ("fusions", fusion, (IntParam("hiden", 4, 64),), "'hiden' is not a keyword of factory"),
        ("fusions", fusion, (IntParam("hidden", 4, 64), IntParam("hidden", 4, 8)), "'hidden' is given twice"),
        ("fusions", fusion, (IntParam("hidden", 64, 4),), "has low 64 above high 4"),
        ("fusions", fusion, (FloatParam("rate", 0.0, 1.0, log=True),), "log scale but its low bound 0.0 is not positive"),
        ("fusions", fusion, (FloatParam("hidden", 4.0, 64.0),), "is a FloatParam, but the factory declares it int"),
        ("fusions", fusion, (IntParam("flag", 0, 1),), "is an IntParam, but the factory declares it bool"),
        ("fusions", fusion, (CategoricalParam("hidden", ("wide", 8)),), "has choices ['wide'] that are not int"),
        ("fusions", fusion, (CategoricalParam("mode", ()),), "has no choices"),
        ("fusions", fusion, (IntParam("hidden", 16, 64),), "range [16, 64], which does not hold the factory's default 8"),
        ("fusions", fusion, (CategoricalParam("mode", ("b", "c")),), "does not include the factory's default 'a'"),
    ],
)
def test_each_defect_is_named(kind, factory, space, expected):
    problems = check(kind, factory, *space)
    assert len(problems) == 1 and expected in problems[0], problems


def test_metric_compute_must_take_three_arguments():
    [problem] = spec_problems("metrics", MetricSpec("m", lambda ranks, k: ranks))
    assert "metric 'm': compute" in problem and "three positional arguments" in problem


def test_every_builtin_passes(registry):
    assert registry.problems() == []


def test_a_missing_required_keyword_is_refused_before_any_data_loads(tmp_path):
    from click.testing import CliRunner

    from crossbench.cli import CliState, cli

    out = CliRunner().invoke(cli, ["run", "--dataset", "tabular", "--seeds", "0", "-q", "--output", str(tmp_path / "o")], obj=CliState())
    assert out.exit_code == 2
    assert "crossbench: error: dataset 'tabular': parameter(s) 'path' are required; give them, e.g. path=VALUE" in out.stderr
    assert not (tmp_path / "o").exists()


def test_a_model_may_search_a_component_parameter():
    assert check("recommenders", lambda *, dim=8: None, IntParam("fusion.heads", 1, 4)) == []
    [problem] = check("recommenders", lambda *, dim=8: None, IntParam("fusoin.heads", 1, 4))
    assert "'fusoin.heads' is not a keyword" in problem
