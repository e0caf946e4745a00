"""Every hyperparameter of every built-in component says what it means in `crossbench show`.

The registry is walked as `crossbench show` walks it: each kind, each registered name, its
own hyperparameters and the shared training settings with their meanings, so a parameter
added later without a meaning fails here, and a meaning left behind for a parameter that no
longer exists fails too.
"""

from __future__ import annotations

import pytest

from crossbench.cli import CliState
from crossbench.cli.show import NONE, param_table
from crossbench.plugin.registry import KINDS
from crossbench.plugin.specs import ComponentSpec

#: The plugins this repository ships (the ``crossbench`` entry points of pyproject.toml).
BUILT_IN = {"basic", "synthetic", "datasets", "metrics", "zoo", "protocols", "feedback", "cdr"}


def _components() -> list[tuple[str, str, ComponentSpec]]:
    registry = CliState().registry
    out = []
    for kind in KINDS:
        for name in registry.names(kind):
            spec = registry.get(kind, name)
            if registry.plugin_of(kind, name) in BUILT_IN and isinstance(spec, ComponentSpec):
                out.append((kind, name, spec))
    return out


COMPONENTS = _components()


def test_the_walk_reaches_every_kind_of_configured_component():
    kinds = {kind for kind, _, _ in COMPONENTS}
    assert {"recommenders", "datasets", "item-encoders", "user-encoders", "fusions", "scorers"} <= kinds
    names = {(kind, name) for kind, name, _ in COMPONENTS}
    assert ("recommenders", "bitgcf") in names and ("datasets", "movielens-100k") in names


@pytest.mark.parametrize(("kind", "name"), [(k, n) for k, n, _ in COMPONENTS])
def test_every_hyperparameter_has_a_meaning(kind, name):
    registry = CliState().registry
    table = param_table(registry, kind, name)
    missing = [r.name for r in (*table.own, *table.training) if r.meaning in ("", NONE) or not r.meaning.strip()]
    assert missing == [], f"{kind} {name!r}: no meaning for {missing}; add them to its spec's meanings="


@pytest.mark.parametrize(("kind", "name"), [(k, n) for k, n, _ in COMPONENTS])
def test_meanings_name_only_existing_parameters(kind, name):
    spec = next(s for k, n, s in COMPONENTS if (k, n) == (kind, name))
    defaults = spec.parameters() if hasattr(spec, "parameters") else spec.hyperparameters()
    assert set(spec.meanings) <= set(defaults), f"{kind} {name!r}: meanings for unknown {sorted(set(spec.meanings) - set(defaults))}"
    assert all("\n" not in m and m.strip() for m in spec.meanings.values()), f"{kind} {name!r}: a meaning is empty or not one line"
