"""The collector that puts the kit's tests beside the conftest that asked for them."""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType
from typing import Any

import pytest


class KitModule(pytest.Module):
    """The test module :mod:`crossbench.testing.kit`, collected for the plugins a conftest names."""

    def __init__(self, *args: Any, plugins: Sequence[str] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.crossbench_plugins = tuple(plugins)

    def _getobj(self) -> ModuleType:
        from crossbench.testing import kit

        return kit
