"""The kit's view of the registry: which components to test, and what to build them with."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import pytest

from crossbench.plugin.registry import Registry

_REGISTRY = pytest.StashKey[Registry]()


def kit_registry(config: pytest.Config) -> Registry:
    """One registry of every installed plugin per test session."""
    if _REGISTRY not in config.stash:
        from crossbench.plugin.manager import get_plugin_manager

        config.stash[_REGISTRY] = Registry(get_plugin_manager())
    return config.stash[_REGISTRY]


def components(config: pytest.Config, plugins: Sequence[str], kind: str) -> list[tuple[str, str]]:
    """``(plugin, name)`` of every component of ``kind`` registered by one of ``plugins``."""
    return [(e.plugin, e.spec.name) for e in kit_registry(config).entries(kind) if e.plugin in plugins]


def spec_of(request: pytest.FixtureRequest, kind: str, name: str) -> Any:
    return kit_registry(request.config).get(kind, name)


def params_for(request: pytest.FixtureRequest, kind: str, name: str) -> dict[str, Any]:
    """The hyperparameters ``crossbench_params`` gives ``(kind, name)``; skip it where they are ``None``."""
    given = request.getfixturevalue("crossbench_params")
    params = given(kind, name) if callable(given) else given.get((kind, name), {})
    if params is None:
        pytest.skip(f"{kind} {name!r}: crossbench_params says to skip it")
    spec = spec_of(request, kind, name)
    skip = {"context", "domain"}
    required = [p for p, default in spec.hyperparameters().items() if default is inspect.Parameter.empty and p not in params and p not in skip]
    if required:
        pytest.fail(f"{kind} {name!r} needs {', '.join(map(repr, required))} (no default): give them in the "
                    f"crossbench_params fixture as {{({kind!r}, {name!r}): {{...}}}}, or None to skip it", pytrace=False)
    return dict(params)
