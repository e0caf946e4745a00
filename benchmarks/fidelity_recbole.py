"""RecBole 1.2.1 as the reference for crossbench's single-domain graph model (LightGCN).

:func:`run_recbole` runs :mod:`fidelity_recbole_run` with RecBole's own interpreter on the
atomic files :func:`fidelity_data.write_recbole` wrote and returns RecBole's test metrics (lower
case, ``recall@10``...). :func:`crossbench_ranking_model` builds crossbench's model with
RecBole's defaults for it, so the two sides differ only where the implementations do.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

RUNNER = Path(__file__).resolve().parent / "fidelity_recbole_run.py"
#: crossbench model name -> RecBole model name
RECBOLE_NAMES = {"lightgcn": "LightGCN", "gru4rec": "GRU4Rec"}
#: the models RecBole trains as sequential models (its own leave-one-out split of one time-stamped file)
SEQUENTIAL = ("gru4rec",)


def crossbench_ranking_model(name: str, *, epochs: int = 300, patience: int = 10):  # noqa: ANN201
    """Crossbench's model with RecBole 1.2.1's defaults (LightGCN: 64 dims, 2 layers, lr 1e-3, reg 1e-5,
    batches of 2048, at most 300 epochs, patience 10; GRU4Rec: crossbench's defaults are RecBole's)."""
    if name == "gru4rec":
        from crossbench_cdr.gru4rec import Gru4Rec

        return Gru4Rec(dim=64, hidden=128, layers=1, dropout=0.3, lr=1e-3, batch_size=2048, history_length=50,
                       epochs=epochs, patience=patience)
    if name != "lightgcn":
        raise ValueError(f"no RecBole counterpart configured for {name!r}")
    from crossbench_cdr.lightgcn import LightGCN

    return LightGCN(graph="target", dim=64, layers=2, lr=1e-3, l2=1e-5, batch_size=2048, epochs=epochs, patience=patience)


def run_recbole(
    *, python: Path, data: Path, dataset: str, model: str, seed: int, threads: int, workdir: Path, epochs: int = 300,
    patience: int = 10, timeout: float = 3600,
) -> tuple[dict[str, float], float]:
    """RecBole's test metrics (best validation epoch) for ``model`` and the seconds the run took."""
    workdir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1")
    cmd = [str(python), str(RUNNER), "--data", str(data), "--dataset", dataset, "--model", RECBOLE_NAMES[model],
           "--seed", str(seed), "--threads", str(threads), "--workdir", str(workdir), "--epochs", str(epochs),
           "--stopping-step", str(patience), *(["--sequential"] if model in SEQUENTIAL else [])]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout)
    seconds = time.perf_counter() - start
    log = workdir / "reference.log"
    log.write_text(f"$ {' '.join(cmd)}\n{proc.stdout}\n--- stderr ---\n{proc.stderr}")
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("FIDELITY-RESULT ")]
    if proc.returncode != 0 or not lines:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        raise RuntimeError(f"RecBole {model} failed (exit {proc.returncode}); log: {log}\n{tail}")
    result = json.loads(lines[-1].removeprefix("FIDELITY-RESULT "))
    return {k.lower(): float(v) for k, v in result["test"].items()}, seconds
