"""Shared fixtures."""

from __future__ import annotations

import pytest
import torch

from crossbench.plugins import get_plugin_manager
from crossbench.registry import Registry


@pytest.fixture(autouse=True)
def _torch_threads():
    """Keep torch to the machine's size and restore its thread count after each test."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def registry() -> Registry:
    return Registry(get_plugin_manager())
