"""Train one RecBole model on a pre-split dataset and print its results as one JSON line (run by RecBole's own Python).

    RECBOLE_PYTHON benchmarks/fidelity_recbole_run.py --data DIR --dataset NAME --model LightGCN \
        --seed 0 --threads 1 --workdir DIR [--epochs N]

``DIR/NAME/NAME.{train,valid,test}.inter`` (written by ``fidelity_data.write_recbole``) are read
through RecBole's ``benchmark_filename``, so RecBole uses that split. Everything else is RecBole's
default protocol: full ranking, early stopping on the validation metric (MRR@10) with RecBole's
patience, the best validation checkpoint evaluated on test. With ``--sequential`` (GRU4Rec) the
file is ``DIR/NAME/NAME.inter`` with timestamps, and RecBole splits it itself, leave-one-out by
time (``LS: valid_and_test``, order ``TO``), building its prefix samples of at most 50 items. This file imports only RecBole and
torch: it runs in RecBole's virtualenv, not crossbench's.
"""

from __future__ import annotations

import argparse
import json
import time

METRICS = ["Recall", "MRR", "NDCG", "Hit", "Precision"]
TOPK = [10, 20]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--model", default="LightGCN")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--epochs", type=int, default=None, help="RecBole's default (300) when left out")
    parser.add_argument("--stopping-step", type=int, default=None, help="RecBole's default (10) when left out")
    parser.add_argument("--sequential", action="store_true", help="one time-stamped file, RecBole's own leave-one-out split")
    args = parser.parse_args()

    import torch
    from recbole.quick_start import run_recbole

    torch.set_num_threads(args.threads)
    config = {
        "data_path": args.data, "benchmark_filename": ["train", "valid", "test"],
        "load_col": {"inter": ["user_id", "item_id"]},
        "seed": args.seed, "reproducibility": True, "use_gpu": False, "device": "cpu",
        "metrics": METRICS, "topk": TOPK, "valid_metric": "MRR@10",
        "eval_args": {"group_by": "user", "order": "RO", "mode": "full"},
        "checkpoint_dir": args.workdir, "show_progress": False, "save_dataset": False, "save_dataloaders": False,
        "log_wandb": False,
    }
    if args.sequential:
        config.pop("benchmark_filename")
        config.update({
            "load_col": {"inter": ["user_id", "item_id", "timestamp"]}, "MAX_ITEM_LIST_LENGTH": 50,
            "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"},
            "train_neg_sample_args": None,  # cross-entropy over the catalogue: no sampled negatives
        })
    if args.epochs is not None:
        config["epochs"] = args.epochs
    if args.stopping_step is not None:
        config["stopping_step"] = args.stopping_step
    start = time.perf_counter()
    result = run_recbole(model=args.model, dataset=args.dataset, config_dict=config, saved=True)
    seconds = time.perf_counter() - start
    out = {
        "seconds": seconds, "threads": torch.get_num_threads(),
        "best_valid": {k: float(v) for k, v in result["best_valid_result"].items()},
        "test": {k: float(v) for k, v in result["test_result"].items()},
    }
    print("FIDELITY-RESULT " + json.dumps(out))


if __name__ == "__main__":
    main()
