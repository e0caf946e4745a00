"""Run the PTUPCDR authors' code (TGT, CMF, EMCDR, PTUPCDR) on a :class:`RatingTask` and read its numbers.

The reference is a checkout of ``easezyc/WSDM2022-PTUPCDR`` outside this repository, run with its
own interpreter (a virtualenv with torch, pandas, tqdm and tensorflow, whose keras pads the
histories). Its ``entry.py`` reads ``config.json`` and ``./data/`` from the working directory, so
each run gets a fresh folder written by :func:`fidelity_data.write_ptupcdr`.

The script trains, in one process and one seed, its four models in turn (its own names in
brackets): TGT (``TgtOnly``), CMF (``DataAug``: one model over both domains' ratings), EMCDR (a
linear map from the source MF user factors to the target ones, on the overlapping training
users) and PTUPCDR (meta network), evaluating MAE and RMSE on the test users after every epoch.
It reports the smallest test MAE and the smallest test RMSE over epochs (each minimised
separately). :func:`parse_log` reads every epoch's line, so both that number and the last
epoch's (a number that never looked at the test set to choose) come out.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

#: the reference's phase banners, in the order it runs them, and the model each one trains
PHASES = {"TgtOnly": "tgt", "DataAug": "cmf", "EMCDR": "emcdr", "PTUPCDR": "ptupcdr"}
_BANNER = re.compile(r"^=+(TgtOnly|DataAug|EMCDR|PTUPCDR|CDR Pretraining)=+$")
_EPOCH = re.compile(r"^MAE: ([0-9.eE+-]+) RMSE: ([0-9.eE+-]+)$")


@dataclass(frozen=True)
class Curve:
    """Test MAE and RMSE after each epoch of one model's training phase."""

    mae: tuple[float, ...]
    rmse: tuple[float, ...]

    def best_test(self) -> tuple[float, float]:
        """The reference's reported pair: the smallest MAE and the smallest RMSE over epochs (test-selected)."""
        return min(self.mae), min(self.rmse)

    def last(self) -> tuple[float, float]:
        """The last epoch's pair: chosen without looking at the test set."""
        return self.mae[-1], self.rmse[-1]


def parse_log(text: str) -> dict[str, Curve]:
    """Per model (``tgt``, ``cmf``, ``emcdr``, ``ptupcdr``), the per-epoch test curve found in ``text``."""
    curves: dict[str, tuple[list[float], list[float]]] = {}
    phase: str | None = None
    for line in text.splitlines():
        line = line.strip()
        banner = _BANNER.match(line)
        if banner:
            phase = PHASES.get(banner.group(1))
            continue
        epoch = _EPOCH.match(line)
        if epoch and phase is not None:
            mae, rmse = curves.setdefault(phase, ([], []))
            mae.append(float(epoch.group(1)))
            rmse.append(float(epoch.group(2)))
    return {k: Curve(tuple(m), tuple(r)) for k, (m, r) in curves.items()}


def run_reference(
    *, checkout: Path, python: Path, workdir: Path, seed: int, epochs: int, lr: float, threads: int = 1, timeout: float = 3600,
) -> tuple[dict[str, Curve], float, str]:
    """Run ``entry.py`` in ``workdir`` (already written); return the curves, the seconds it took, and its log path."""
    entry = Path(checkout) / "entry.py"
    if not entry.is_file():
        raise FileNotFoundError(f"{entry} not found: --ptupcdr-ref must be a checkout of easezyc/WSDM2022-PTUPCDR")
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
        env[var] = str(threads)
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    # torch.set_num_threads is not called by the reference; OMP_NUM_THREADS caps torch's pool the same way
    cmd = [str(python), str(entry), "--seed", str(seed), "--epoch", str(epochs), "--lr", str(lr), "--gpu", ""]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout)
    seconds = time.perf_counter() - start
    log = Path(workdir) / "reference.log"
    log.write_text(f"$ {' '.join(cmd)}\n{proc.stdout}\n--- stderr ---\n{proc.stderr}")
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        raise RuntimeError(f"the PTUPCDR reference failed (exit {proc.returncode}); log: {log}\n{tail}")
    curves = parse_log(proc.stdout)
    missing = [m for m in PHASES.values() if m not in curves]
    if missing:
        raise RuntimeError(f"the PTUPCDR reference printed no epoch lines for {missing}; log: {log}")
    return curves, seconds, str(log)

