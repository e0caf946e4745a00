"""Experiments: what to run (dataset, protocol, models, metrics, seeds) and the runner."""

from __future__ import annotations

import dataclasses
import re
import shutil
import tempfile
import time
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from crossbench.data.audit import audit_split
from crossbench.data.protocols import PROTOCOLS, Split, make_protocol, resolve_targets
from crossbench.errors import CrossbenchError, closest, unknown_name_message
from crossbench.evaluate import evaluate
from crossbench.evaluate.groups import breakdown, head_tail, item_popularity, user_groups
from crossbench.evaluate.peruser import save_per_user
from crossbench.evaluate.sampled import STRATEGIES, draw_negatives, evaluate_sampled, sampled_key
from crossbench.interfaces import RunEnv, check_kwargs
from crossbench.leaderboard import render_markdown
from crossbench.registry import Registry
from crossbench.results import SCHEMA_VERSION, environment, peak_rss_mb, write_json_atomic, write_text_atomic
from crossbench.train import ComponentRef, train_items


@dataclass(frozen=True)
class DatasetRef:
    """A registered dataset and its hyperparameters."""

    name: str = "synthetic"
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ProtocolRef:
    """A protocol, the target domain(s) (empty: the dataset's default; ``("all",)``: each in turn)."""

    name: str = "cold-start"
    targets: tuple[str, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelRef:
    """A registered recommender, its hyperparameters and the label it gets in tables."""

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)
    label: str | None = None

    @property
    def display(self) -> str:
        return self.label or self.name


@dataclass(frozen=True)
class Experiment:
    """Everything a run needs; built from a TOML file, from CLI options, or the default."""

    name: str = "default"
    dataset: DatasetRef = field(default_factory=DatasetRef)
    protocol: ProtocolRef = field(default_factory=ProtocolRef)
    models: tuple[ModelRef, ...] = ()
    metrics: tuple[str, ...] = ("recall", "ndcg", "hr", "mrr")
    ks: tuple[int, ...] = (10, 20)
    seeds: tuple[int, ...] = (0,)
    chunk_size: int = 1024
    #: 0: full ranking (the default). N > 0: rank the relevant items among N sampled
    #: negatives per user instead; such results are labelled "sampled" everywhere.
    sampled_negatives: int = 0
    sampling: str = "uniform"


#: The benchmark ``crossbench run`` runs with no arguments.
DEFAULT_EXPERIMENT = Experiment(
    name="default",
    dataset=DatasetRef("synthetic", {}),
    protocol=ProtocolRef("cold-start", (), {"test_fraction": 0.5, "valid_fraction": 0.1}),
    models=(ModelRef("popularity"), ModelRef("mf"), ModelRef("shared-mean")),
    seeds=(0, 1, 2),
)


# ------------------------------------------------------------------------------ TOML


_TOP_KEYS = {"name", "dataset", "protocol", "models", "metrics", "ks", "seeds", "chunk_size", "sampled_negatives", "sampling"}


def load_experiment(path: Path) -> Experiment:
    """Parse an experiment TOML file; errors name the file and what is wrong in it."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CrossbenchError(f"experiment file {path} does not exist") from None
    except UnicodeDecodeError as exc:
        raise CrossbenchError(f"experiment file {path}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise CrossbenchError(f"experiment file {path}: malformed TOML: {exc}") from None
    return experiment_from_dict(raw, where=f"experiment file {path}")


def experiment_from_dict(raw: Mapping[str, Any], *, where: str) -> Experiment:
    """Build an :class:`Experiment` from a parsed TOML document."""
    for key in raw:
        if key not in _TOP_KEYS:
            near = closest(key, _TOP_KEYS)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise CrossbenchError(f"{where}: unknown key {key!r}{hint} (valid: {', '.join(sorted(_TOP_KEYS))})")
    kwargs: dict[str, Any] = {}
    if "name" in raw:
        kwargs["name"] = _expect(raw["name"], str, f"{where}: 'name'")
    if "dataset" in raw:
        table = dict(_expect(raw["dataset"], dict, f"{where}: [dataset]"))
        name = _expect(table.pop("name", None), str, f"{where}: [dataset] 'name'")
        kwargs["dataset"] = DatasetRef(name, table)
    if "protocol" in raw:
        table = dict(_expect(raw["protocol"], dict, f"{where}: [protocol]"))
        name = _expect(table.pop("name", "cold-start"), str, f"{where}: [protocol] 'name'")
        targets: tuple[str, ...] = ()
        if "target" in table and "targets" in table:
            raise CrossbenchError(f"{where}: [protocol] has both 'target' and 'targets'; keep one")
        if "target" in table:
            targets = (_expect(table.pop("target"), str, f"{where}: [protocol] 'target'"),)
        if "targets" in table:
            value = table.pop("targets")
            targets = ("all",) if value == "all" else tuple(_expect_list(value, str, f"{where}: [protocol] 'targets'"))
        kwargs["protocol"] = ProtocolRef(name, targets, table)
    if "models" in raw:
        models = []
        for i, entry in enumerate(_expect_list(raw["models"], dict, f"{where}: [[models]]")):
            table = dict(entry)
            name = _expect(table.pop("name", None), str, f"{where}: [[models]] #{i + 1} 'name'")
            label = table.pop("label", None)
            if label is not None:
                label = _expect(label, str, f"{where}: [[models]] #{i + 1} 'label'")
            params = {k: _component_ref(v) for k, v in table.items()}
            models.append(ModelRef(name, params, label))
        kwargs["models"] = tuple(models)
    if "metrics" in raw:
        kwargs["metrics"] = tuple(_expect_list(raw["metrics"], str, f"{where}: 'metrics'"))
    if "ks" in raw:
        kwargs["ks"] = tuple(_expect_list(raw["ks"], int, f"{where}: 'ks'"))
    if "seeds" in raw:
        kwargs["seeds"] = tuple(_expect_list(raw["seeds"], int, f"{where}: 'seeds'"))
    if "chunk_size" in raw:
        kwargs["chunk_size"] = _expect(raw["chunk_size"], int, f"{where}: 'chunk_size'")
    if "sampled_negatives" in raw:
        kwargs["sampled_negatives"] = _expect(raw["sampled_negatives"], int, f"{where}: 'sampled_negatives'")
    if "sampling" in raw:
        kwargs["sampling"] = _expect(raw["sampling"], str, f"{where}: 'sampling'")
    exp = Experiment(**kwargs)
    if not exp.models:
        raise CrossbenchError(f"{where}: no [[models]] given; add at least one, e.g. [[models]] name = \"popularity\"")
    return exp


def _component_ref(value: Any) -> Any:
    if isinstance(value, dict) and "name" in value:
        rest = dict(value)
        return ComponentRef(str(rest.pop("name")), rest)
    return value


def _expect(value: Any, kind: type, where: str) -> Any:
    if value is None:
        raise CrossbenchError(f"{where} is missing")
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise CrossbenchError(f"{where} must be a {kind.__name__}, got {value!r}")
    return value


def _expect_list(value: Any, kind: type, where: str) -> list[Any]:
    if not isinstance(value, list) or not value:
        raise CrossbenchError(f"{where} must be a non-empty list, got {value!r}")
    return [_expect(v, kind, f"{where} item") for v in value]


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


# ------------------------------------------------------------------------------ validation


def validate(exp: Experiment, registry: Registry) -> None:
    """Check every name and hyperparameter before any work, so bad input writes nothing."""
    ds = registry.get("datasets", exp.dataset.name)
    check_kwargs(ds, exp.dataset.params, where=f"dataset {exp.dataset.name!r}")
    if exp.protocol.name not in PROTOCOLS:
        raise CrossbenchError(unknown_name_message("protocol", exp.protocol.name, PROTOCOLS))
    make_protocol(exp.protocol.name, target="?", seed=0, **exp.protocol.params)
    if not exp.models:
        raise CrossbenchError("no models to run; name at least one with --model")
    labels = [m.display for m in exp.models]
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise CrossbenchError(f"model label(s) {dup} appear more than once; give each a distinct label")
    env = RunEnv(registry=registry)
    for m in exp.models:
        spec = registry.get("recommenders", m.name)
        check_kwargs(spec, m.params, where=f"model {m.display!r}")
        model = spec.factory(**m.params)
        if hasattr(model, "check"):
            model.check(env, where=f"model {m.display!r}")
    registry.metrics(exp.metrics)
    if not exp.ks or any(k < 1 for k in exp.ks):
        raise CrossbenchError(f"cut-offs must be positive integers, got {list(exp.ks)}")
    if not exp.seeds:
        raise CrossbenchError("at least one seed is needed")
    if exp.chunk_size < 1:
        raise CrossbenchError(f"chunk_size must be positive, got {exp.chunk_size}")
    if exp.sampled_negatives < 0:
        raise CrossbenchError(f"sampled_negatives must be 0 (full ranking) or positive, got {exp.sampled_negatives}")
    if exp.sampling not in STRATEGIES:
        raise CrossbenchError(unknown_name_message("sampling strategy", exp.sampling, STRATEGIES))
    if exp.sampled_negatives:
        full_only = [n for n, spec in registry.metrics(exp.metrics).items() if spec.inputs not in ("ranks", "graded")]
        if full_only:
            raise CrossbenchError(f"metric(s) {', '.join(full_only)} need the full ranking; drop them or set sampled_negatives = 0")


# ------------------------------------------------------------------------------ running


@dataclass(frozen=True)
class RunOptions:
    """How to run: where results go, on which device, with how many threads."""

    output_dir: Path
    device: str = "auto"
    threads: int | None = None
    progress: bool = True
    cache_dir: Path = Path(".crossbench-cache")
    command: str | None = None
    bf16: bool = False


def pick_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise CrossbenchError("--device cuda was asked for, but torch sees no CUDA device; use --device cpu or auto")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise CrossbenchError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N")
    return torch.device(name)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "model"


def run_experiment(
    exp: Experiment,
    *,
    registry: Registry,
    options: RunOptions,
    log: Callable[[str], None] = lambda _msg: None,
    tuning: Mapping[str, Any] | None = None,
) -> tuple[list[dict[str, Any]], str]:
    """Run every (target, seed, model); write records and the leaderboard all at once at the end.

    Results are staged in a temporary folder and moved into ``options.output_dir`` only when
    every run has finished, so a failure leaves no half-written results.
    """
    validate(exp, registry)
    device = pick_device(options.device)
    if options.threads is not None:
        if options.threads < 1:
            raise CrossbenchError(f"--threads must be at least 1, got {options.threads}")
        torch.set_num_threads(options.threads)
    threads = torch.get_num_threads()
    t_load = time.perf_counter()
    data = registry.get("datasets", exp.dataset.name).factory(**exp.dataset.params).load()
    load_s = time.perf_counter() - t_load
    targets = resolve_targets(data, list(exp.protocol.targets) or None)
    metrics = registry.metrics(exp.metrics)
    env_info = environment()
    plugins = [
        {"name": n, "package": p, "version": v}
        for n, p, v in registry.pm.plugin_distributions()  # type: ignore[attr-defined]
    ]
    dataset_fp = data.fingerprint()
    options.output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{options.output_dir.name}.staging-", dir=options.output_dir.parent))
    records: list[dict[str, Any]] = []
    try:
        for target in targets:
            for seed in exp.seeds:
                split = make_protocol(exp.protocol.name, target=target, seed=seed, **exp.protocol.params).split(data)
                split_fp = split.fingerprint()
                audit = audit_split(split).to_dict()
                for m in exp.models:
                    log(f"{m.display}: target {target}, seed {seed}")
                    rec = _run_one(exp, m, split, split_fp, seed=seed, registry=registry, device=device, options=options, metrics=metrics, staging=staging)
                    rec["protocol"]["audit"] = audit
                    if tuning and m.display in tuning:
                        rec["model"]["tuning"] = tuning[m.display].to_dict()
                    rec.update(
                        schema=SCHEMA_VERSION,
                        experiment=exp.name,
                        command=options.command,
                        environment=env_info,
                        plugins=plugins,
                        threads=threads,
                        device=str(device),
                        dataset={
                            "name": exp.dataset.name,
                            "params": dict(exp.dataset.params),
                            "fingerprint": dataset_fp,
                            "load_s": load_s,
                            "meta": dict(data.meta),
                            "domains": {
                                d.name: {"users": int(len(d.users())), "items": d.n_items, "interactions": d.n_interactions}
                                for d in data.domains.values()
                            },
                        },
                    )
                    rec["timings"]["peak_rss_mb"] = peak_rss_mb()
                    records.append(rec)
                    write_json_atomic(staging / "runs" / rec["file"], rec)
        markdown = render_markdown(records, command=options.command, record_dir=staging / "runs")
        write_text_atomic(staging / "leaderboard.md", markdown)
        _publish(staging, options.output_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    for rec in records:
        registry.pm.hook.crossbench_run_finished(record=rec, path=options.output_dir / "runs" / rec["file"])
    return records, markdown


def _run_one(
    exp: Experiment, m: ModelRef, split: Split, split_fp: str, *, seed: int, registry: Registry,
    device: torch.device, options: RunOptions, metrics: Mapping[str, Any], staging: Path,
) -> dict[str, Any]:
    torch.manual_seed(seed)
    model = registry.get("recommenders", m.name).factory(**m.params)
    env = RunEnv(registry=registry, device=device, seed=seed, progress=options.progress, cache_dir=options.cache_dir, bf16=options.bf16)
    t0 = time.perf_counter()
    report = model.fit(split, env=env)
    fit_s = time.perf_counter() - t0
    n_items = split.train.domain(split.target).n_items
    exclude = train_items(split.train, split.target)
    popularity = item_popularity(split.train, split.target)
    t1 = time.perf_counter()
    if exp.sampled_negatives:
        sample = draw_negatives(
            split.test, n_items=n_items, n_negatives=exp.sampled_negatives, strategy=exp.sampling,
            popularity=popularity, exclude=exclude, seed=seed,
        )
        result = evaluate_sampled(
            model.score, split.test, n_items=n_items, metrics=metrics, ks=exp.ks, sample=sample,
            chunk_size=exp.chunk_size, device=device,
        )
        columns = [sampled_key(f"{name}@{k}", sample) for k in exp.ks for name in metrics]
    else:
        result = evaluate(
            model.score, split.test, n_items=n_items, metrics=metrics, ks=exp.ks, exclude=exclude,
            chunk_size=exp.chunk_size, device=device, progress=options.progress, label=f"evaluating {m.display}",
            item_popularity=popularity, item_groups=head_tail(popularity),
        )
        columns = [f"{name}@{k}" for k in exp.ks for name in metrics]
    eval_s = time.perf_counter() - t1
    stem = f"{_slug(split.target)}-{_slug(m.display)}-seed{seed}"
    users_file = f"{stem}.users.npz"
    sha = save_per_user(result, staging / "runs" / users_file)
    return {
        "file": f"{stem}.json",
        "seed": seed,
        "model": {
            "label": m.display,
            "name": m.name,
            "plugin": registry.plugin_of("recommenders", m.name),
            "params": {k: (v.to_dict() if isinstance(v, ComponentRef) else v) for k, v in m.params.items()},
            "description": model.describe(),
        },
        "protocol": {
            "name": split.protocol,
            "target": split.target,
            "params": dict(split.params),
            "split_fingerprint": split_fp,
            "n_test_users": int(split.test.n_users),
            "n_valid_users": int(split.valid.n_users),
        },
        "fit": dataclasses.asdict(report),
        "timings": {
            "fit_s": fit_s,
            "train_s": report.train_seconds,
            "train_samples_per_s": report.samples_per_second,
            "fit_threads": report.threads,
            "eval_s": eval_s,
            "eval_users_per_s": split.test.n_users / max(eval_s, 1e-9),
        },
        "evaluation": {
            "mode": result.mode,
            "sampling": dict(result.sampling),
            "ks": list(exp.ks),
            "columns": columns,
            "metrics": result.means,
            "lower_is_better": [c for c, (name, _) in zip(columns, ((n, k) for k in exp.ks for n in metrics)) if not metrics[name].higher_is_better],
            "user_groups": _finite_groups(breakdown(result, user_groups(split.train, split.target, result.users))),
            "per_user": {"path": users_file, "sha256": sha},
        },
    }


def _finite_groups(groups: Mapping[str, Mapping[str, float]]) -> dict[str, dict[str, float | None]]:
    """Drop empty user groups; undefined means become ``null`` (JSON has no NaN)."""
    return {
        name: {k: (None if v != v else v) for k, v in values.items()}
        for name, values in groups.items()
        if values.get("n_users", 0) > 0
    }


def _publish(staging: Path, output_dir: Path) -> None:
    """Replace ``output_dir``'s records and leaderboard with the staged ones.

    The folder then describes this run alone, so ``crossbench leaderboard`` on it rebuilds
    the same table. Records of an earlier run there are removed.
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    old = output_dir / "runs"
    if old.exists():
        trash = Path(tempfile.mkdtemp(prefix=".old-runs-", dir=output_dir))
        old.replace(trash / "runs")
        shutil.rmtree(trash, ignore_errors=True)
    (staging / "runs").replace(old)
    (staging / "leaderboard.md").replace(output_dir / "leaderboard.md")
