"""Cross-domain data, protocols (splits) and their checks.

The names below load their modules (pandas, numpy) on first use, so that importing one
submodule does not import the others.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from crossbench.data.audit import LeakageError, audit_split
    from crossbench.data.model import CrossDomainData, Domain
    from crossbench.data.protocols import GroundTruth, Protocol, Split

_HOMES = {
    "LeakageError": "audit", "audit_split": "audit", "CrossDomainData": "model", "Domain": "model",
    "GroundTruth": "protocols", "Protocol": "protocols", "Split": "protocols",
}

__all__ = ["CrossDomainData", "Domain", "GroundTruth", "LeakageError", "Protocol", "Split", "audit_split"]


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(f"crossbench.data.{_HOMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
