"""Runs the simulations of an experiment: every (target, seed, model), each kept as it goes.

Layout of the results folder::

    DIR/simulation.json                 the experiment with its [simulation] settings and fingerprint
    DIR/simulations/*.json              one record per (target, model, seed): every finished round
    DIR/simulations/*.taken.npz         the (user, item, round, rank) interactions taken so far
    DIR/simulations.md                  the leaderboard (models as rows)
    DIR/simulation-rounds.md            per-round tables
    DIR/simulation-TARGET.png           per-round curves
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from collections.abc import Callable
from typing import Any

from crossbench.data.protocols import resolve_targets
from crossbench.errors import CrossbenchError
from crossbench.experiment.checks import check_simulation, dataset_params, feedback_model, pick_device, resolve_simulation, validate
from crossbench.loop.report import write_reports
from crossbench.loop.simulation import Simulation
from crossbench.plugin.build import make_protocol, make_recommender
from crossbench.plugin.experiment import Experiment, RunOptions
from crossbench.plugin.interfaces import RunEnv
from crossbench.plugin.registry import Registry
from crossbench.plugin.simulation_settings import SimulationSettings
from crossbench.plugin.specs import ComponentRef
from crossbench.records.store import environment, write_json_atomic
from crossbench.run.runner import record_file, set_threads

MANIFEST = "simulation.json"
SCHEMA = 1


def simulation_fingerprint(exp: Experiment, settings: SimulationSettings) -> str:
    """sha256 of everything that decides the simulations' results (not the name, nor the chunk size)."""
    body = dataclasses.asdict(exp)
    for key in ("name", "chunk_size", "simulation", "primary"):
        body.pop(key, None)
    body["simulation"] = dataclasses.asdict(settings)
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=repr).encode()).hexdigest()


def run_simulations(
    exp: Experiment, settings: SimulationSettings, *, registry: Registry, options: RunOptions,
    log: Callable[[str], None] = lambda _m: None, overwrite: bool = False,
) -> list[dict[str, Any]]:
    """Run (or resume) every simulation of ``exp``; write the reports; return the records."""
    validate(exp, registry)
    settings = resolve_simulation(settings, exp, registry)
    check_simulation(settings, registry, dataset=exp.dataset.name)
    device = pick_device(options.device)
    threads = set_threads(options.threads)
    fingerprint = simulation_fingerprint(exp, settings)
    folder = options.output_dir
    sims = folder / "simulations"
    _check_folder(folder, fingerprint, overwrite=overwrite)
    if overwrite and sims.is_dir():
        shutil.rmtree(sims)
    data = registry.get("datasets", exp.dataset.name).factory(**dataset_params(exp, registry)).load()
    targets = resolve_targets(data, list(exp.protocol.targets) or None)
    write_json_atomic(folder / MANIFEST, {"schema": SCHEMA, "fingerprint": fingerprint, "experiment": dataclasses.asdict(exp),
                                          "simulation": dataclasses.asdict(settings)})
    metrics = registry.metrics(settings.metrics)
    records = []
    for target in targets:
        for seed in exp.seeds:
            split = make_protocol(registry, exp.protocol.name, target=target, seed=seed, **exp.protocol.params).split(data)
            for m in exp.models:
                name = record_file(target, m.display, seed)
                sim = Simulation(sims / name, sims / name.replace(".json", ".taken.npz"), settings, seed, chunk_size=exp.chunk_size)
                if sim.record_path.is_file():
                    saved = json.loads(sim.record_path.read_text(encoding="utf-8"))
                    if saved.get("finished") and saved.get("fingerprint") == fingerprint:
                        log(f"{m.display}: target {target}, seed {seed}: finished earlier, kept")
                        records.append(saved)
                        continue
                log(f"{m.display}: target {target}, seed {seed}: simulating {settings.rounds} rounds")
                model = make_recommender(registry, m.name, m.params, where=f"model {m.display!r}")
                header = {
                    "schema": SCHEMA, "kind": "simulation", "fingerprint": fingerprint, "experiment": exp.name,
                    "command": options.command, "target": target, "seed": seed, "threads": threads, "device": str(device),
                    "environment": environment(),
                    "model": {"label": m.display, "name": m.name,
                              "params": {k: (v.to_dict() if isinstance(v, ComponentRef) else v) for k, v in m.params.items()}},
                    "settings": {**dataclasses.asdict(settings), "primary": settings.primary},
                    "dataset": {"name": exp.dataset.name, "params": dict(exp.dataset.params), "fingerprint": data.fingerprint()},
                    "protocol": {"name": split.protocol, "params": dict(split.params), "split_fingerprint": split.fingerprint()},
                }
                env = RunEnv(registry=registry, device=device, seed=seed, progress=options.progress, cache_dir=options.cache_dir)
                feedback = feedback_model(settings, registry)
                header["feedback"] = {"name": settings.feedback, "params": dict(feedback.describe())}
                records.append(sim.run(split, data, model, feedback, env=env, metrics=metrics, header=header, log=log))
    write_reports(records, folder, command=options.command)
    return records


def _check_folder(folder: Any, fingerprint: str, *, overwrite: bool) -> None:
    if folder.exists() and not folder.is_dir():
        raise CrossbenchError(f"--output {folder} is an existing file, not a folder; choose a folder")
    from crossbench.records.folder import ResultsFolder

    ResultsFolder(folder)._probe_writable()  # an unwritable place fails before any work
    manifest = folder / MANIFEST
    if overwrite or not manifest.is_file() or not any((folder / "simulations").glob("*.json")):
        return
    try:
        saved = json.loads(manifest.read_text(encoding="utf-8")).get("fingerprint")
    except (OSError, json.JSONDecodeError):
        saved = None
    if saved != fingerprint:
        raise CrossbenchError(
            f"--output {folder} holds the simulations of another experiment or [simulation] settings; "
            "choose another --output, or pass --overwrite to replace them"
        )
