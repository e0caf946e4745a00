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


def write_dist(root, name: str, *, entry_points: dict[str, dict[str, str]], files: dict[str, str]):
    """A package installed by hand into folder ``root`` (put ``root`` on ``sys.path``): its ``files``
    plus a ``NAME-0.1.dist-info`` with the given entry points, as pip would leave it; no network."""
    from pathlib import Path

    root = Path(root)
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    info = root / f"{name.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n", encoding="utf-8")
    lines = []
    for group, eps in entry_points.items():
        lines.append(f"[{group}]")
        lines += [f"{k} = {v}" for k, v in eps.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root
