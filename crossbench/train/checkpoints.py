"""Checkpoints of composed models: plain tensors and primitives, written atomically, read safely.

A checkpoint holds the model's ``state_dict`` (on the CPU) and its description (components
and training settings, as in the run record). It is written to a temporary file and renamed,
and read with ``torch.load(..., weights_only=True)``: nothing but tensors and primitives.
Reading it for a model of another configuration is refused with the difference named.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from crossbench.errors import CrossbenchError
from crossbench.files import atomic_write

CHECKPOINT_FORMAT = 1
_CONFIGURATION = ("components", "training")
#: training settings added after checkpoints were first written, with the value that reproduces
#: the training before them: a checkpoint that lacks one was trained with that value
ADDED_SETTINGS = {"warmup_epochs": 0.0, "lr_decay": "none", "min_lr_ratio": 0.0, "clip_norm": 0.0, "weight_decay": 0.0,
                  "ema_epochs": 0.0, "target_groups": 1}


def save_checkpoint(path: Path, *, state: Mapping[str, torch.Tensor], describe: Mapping[str, Any]) -> Path:
    """Write ``state`` and ``describe`` to ``path`` atomically; returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "describe": json.dumps(describe, sort_keys=True),
        "state": {k: v.detach().cpu() for k, v in state.items()},
    }
    with atomic_write(path) as f:
        torch.save(payload, f)
    return path


def read_checkpoint(path: Path, *, describe: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The state saved at ``path``, after checking it was saved by a model described as ``describe``."""
    if not path.is_file():
        raise CrossbenchError(f"checkpoint {str(path)!r} does not exist; fit the model with a checkpoint_dir first")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CrossbenchError(f"checkpoint {str(path)!r} could not be read safely: {type(exc).__name__}: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CrossbenchError(f"checkpoint {str(path)!r} is not a crossbench checkpoint of format {CHECKPOINT_FORMAT}")
    # the configuration: components and training settings (not what a fitted model read, e.g. item texts)
    saved = {k: v for k, v in json.loads(payload["describe"]).items() if k in _CONFIGURATION}
    mine = {k: v for k, v in json.loads(json.dumps(describe, sort_keys=True)).items() if k in _CONFIGURATION}
    if isinstance(saved.get("training"), dict) and isinstance(mine.get("training"), dict):
        # saved before some settings existed: it was trained with their defaults
        missing = {k: v for k, v in ADDED_SETTINGS.items() if k in mine["training"] and k not in saved["training"]}
        saved["training"] = {**missing, **saved["training"]}
    if saved != mine:
        diff = sorted(k for k in set(saved["training"]) | set(mine["training"]) if saved["training"].get(k) != mine["training"].get(k))
        what = f"training settings differ: {diff}" if diff else "components differ"
        raise CrossbenchError(f"checkpoint {str(path)!r} was saved by another configuration ({what}); build the same model")
    return dict(payload["state"])
