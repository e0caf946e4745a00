"""``KEY=VALUE`` settings from the command line (``--dataset-param``, ``--model-param``, ...)."""

from __future__ import annotations

import re
import tomllib
from typing import Any

from crossbench.errors import CrossbenchError


def parse_assignment(text: str, *, option: str) -> tuple[str, Any]:
    """``KEY=VALUE`` from the command line; VALUE is read as a TOML value, else as a string."""
    if "=" not in text:
        raise CrossbenchError(f"{option} {text!r}: expected KEY=VALUE")
    key, value = text.split("=", 1)
    key = key.strip()
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
        raise CrossbenchError(f"{option} {text!r}: {key!r} is not a valid parameter name")
    try:
        parsed = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value
    return key, parsed
