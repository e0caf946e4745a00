"""The crossbench conformance kit: a pytest plugin that runs the contract tests of every kind
of component on the components of named plugins.

Enable it in a ``conftest.py`` with one line naming the plugins (their ``crossbench`` entry-point
names) whose components to test::

    crossbench_plugins = ["example"]

The kit's tests are then collected beside that conftest (node ids ``conftest.py::test_...``),
one per component and contract. The plugin is loaded into every pytest run through the
``pytest11`` entry point, but stays inert (it imports neither torch nor any plugin) until a
conftest asks for it. Where plugin autoloading is off (``PYTEST_DISABLE_PLUGIN_AUTOLOAD``),
add ``pytest_plugins = ["crossbench.testing"]`` to the same conftest.

Fixtures a conftest may override:

- ``crossbench_params``: a mapping ``(kind, name) -> dict`` of hyperparameters the kit builds a
  component with (``None``: skip that component, e.g. a dataset that needs a file), or a
  callable ``(kind, name) -> dict | None``. Kinds are those of ``crossbench list``.
- ``crossbench_oracles``: ``metric name -> oracle(ranked, relevant, k) -> float``, a
  brute-force definition of a ``ranks``/``graded`` metric: ``ranked`` is every item index,
  best first (ties broken pessimistically), ``relevant`` maps each relevant item to its grade.

Fixtures it provides: ``crossbench_kit_data`` (a tiny two-domain
:class:`~crossbench.data.model.CrossDomainData`, target ``"movies"``) and
``crossbench_kit_context`` (a :class:`~crossbench.plugin.interfaces.BuildContext` on its training split).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.register_assert_rewrite("crossbench.testing.kit")

#: The conftest attribute that names the plugins to test.
ATTRIBUTE = "crossbench_plugins"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "crossbench_kit: a contract test of the crossbench conformance kit")


def pytest_plugin_registered(plugin: Any, manager: pytest.PytestPluginManager) -> None:
    names = getattr(plugin, ATTRIBUTE, None)
    path = getattr(plugin, "__file__", None)
    if names is None or path is None or Path(path).name != "conftest.py":
        return
    if isinstance(names, str) or not all(isinstance(n, str) for n in names):
        raise pytest.UsageError(f"{path}: {ATTRIBUTE} must be a list of plugin names, e.g. {ATTRIBUTE} = ['example']")
    _pending[Path(path).resolve()] = tuple(names)


#: conftests seen before ``pytest_configure`` ran (the root conftest is registered early)
_pending: dict[Path, tuple[str, ...]] = {}


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.name != "conftest.py":
        return None
    names = _pending.get(file_path.resolve())
    if not names:
        return None
    from crossbench.testing.collect import KitModule

    return KitModule.from_parent(parent, path=file_path, plugins=names)


@pytest.fixture(scope="session")
def crossbench_params() -> Any:
    """Hyperparameters for the components under test: ``(kind, name) -> dict`` (override in a conftest)."""
    return {}


@pytest.fixture(scope="session")
def crossbench_oracles() -> Any:
    """Brute-force definitions of the metrics under test: ``name -> oracle(ranked, relevant, k)``."""
    return {}


@pytest.fixture(scope="session")
def crossbench_kit_data() -> Any:
    from crossbench.testing.data import kit_data

    return kit_data()


@pytest.fixture(scope="session")
def crossbench_kit_context(crossbench_kit_data: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    from crossbench.testing.data import kit_context

    return kit_context(crossbench_kit_data, tmp_path_factory.mktemp("crossbench-kit-cache"))
