"""Checks of an experiment against the registry before any work, so bad input writes nothing:
every name registered, every hyperparameter known and of its declared type, every setting in
range; and the default experiment a plugin provides.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from crossbench.errors import CrossbenchError, short_repr, shorten, unknown_name_message
from crossbench.plugin.build import make_protocol, make_recommender
from crossbench.plugin.experiment import Experiment, ProtocolRef
from crossbench.plugin.interfaces import Recommender, RunEnv
from crossbench.plugin.manager import DISABLE_ENV, disabled_plugins
from crossbench.plugin.params import coerce_kwargs, seed_problem
from crossbench.plugin.registry import Registry
from crossbench.plugin.simulation_settings import SimulationSettings
from crossbench.plugin.specs import COMPONENT_ROLES, ComponentRef

if TYPE_CHECKING:
    import pluggy
    import torch


def default_experiment(pm: pluggy.PluginManager) -> Experiment | None:
    """The experiment a loaded plugin provides as the default (hook ``crossbench_default_experiment``), if any.

    Two plugins providing one is an error naming both.
    """
    found = []
    for impl in reversed(pm.hook.crossbench_default_experiment.get_hookimpls()):
        try:
            exp = impl.function()
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - a plugin's bug, reported as its own
            raise CrossbenchError(f"plugin {impl.plugin_name!r}: crossbench_default_experiment() raised "
                                  f"{type(exc).__name__}: {shorten(str(exc), 120)}; give an experiment file, or disable "
                                  f"the plugin with {DISABLE_ENV}={impl.plugin_name}") from None
        if exp is None:
            continue
        if not isinstance(exp, Experiment):
            raise CrossbenchError(f"plugin {impl.plugin_name!r}: crossbench_default_experiment() returned {short_repr(exp)}, "
                                  "expected an Experiment")
        found.append((impl.plugin_name, exp))
    if len(found) > 1:
        names = " and ".join(repr(name) for name, _ in found)
        raise CrossbenchError(
            f"plugins {names} both provide a default experiment; disable one with CROSSBENCH_DISABLE_PLUGINS "
            "or give an experiment file"
        )
    return found[0][1] if found else None


def no_default_message() -> str:
    """What to do when no loaded plugin provides a default experiment."""
    disabled = sorted(disabled_plugins())
    why = (f"the plugins disabled by {DISABLE_ENV} ({', '.join(disabled)}) may be the one that does"
           if disabled else "install or enable the plugin that provides it")
    return (
        "no default experiment: no loaded plugin provides one (hook crossbench_default_experiment); "
        f"{why}; or give an experiment file (crossbench run EXPERIMENT.toml), or name everything: "
        "--dataset NAME --protocol NAME --model NAME --metrics NAMES"
    )


def dataset_params(exp: Experiment, registry: Registry) -> dict[str, Any]:
    """The dataset's parameters, checked by name and converted to the types its factory declares."""
    return coerce_kwargs(registry.get("datasets", exp.dataset.name), exp.dataset.params, where=f"dataset {exp.dataset.name!r}")


def coerce_components(exp: Experiment, registry: Registry) -> Experiment:
    """``exp`` with the hyperparameters of each component named in a model's table
    (``fusion = { name = "attention", heads = 2 }``) checked by name and converted to the types
    the component declares, before any work; a wrong one is one line naming the model and role."""
    models = []
    for m in exp.models:
        params = dict(m.params)
        for role, value in m.params.items():
            if role in COMPONENT_ROLES and isinstance(value, ComponentRef):
                spec = registry.get(COMPONENT_ROLES[role], value.name)
                where = f"model {m.display!r}: {role} {value.name!r}"
                params[role] = ComponentRef(value.name, coerce_kwargs(spec, value.params, where=where))
        models.append(dataclasses.replace(m, params=params))
    return dataclasses.replace(exp, models=tuple(models), protocol=coerce_protocol(exp, registry))


def coerce_protocol(exp: Experiment, registry: Registry) -> ProtocolRef:
    """``exp.protocol`` with its parameters checked by name and converted to the types its factory declares."""
    spec = registry.get("protocols", exp.protocol.name)
    given = dict(exp.protocol.params)
    if any(key in ("target", "seed") or key not in spec.parameters() for key in given):
        return exp.protocol  # an unknown parameter: make_protocol names it with the valid ones
    where = f"protocol {exp.protocol.name!r}"
    params = coerce_kwargs(spec, {**given, "target": "?", "seed": 0}, where=where)
    return dataclasses.replace(exp.protocol, params={k: params[k] for k in given})


def validate(exp: Experiment, registry: Registry) -> dict[str, Recommender]:
    """Check every name and hyperparameter before any work, so bad input writes nothing.

    Returns each model as built for its check (by label, unfitted): the runner fits these
    instances in their first run instead of building each model a second time.
    """
    from crossbench.data.protocols import Evaluation
    from crossbench.evaluate.rating import check_task
    from crossbench.evaluate.sampled import STRATEGIES  # loads torch: only when an experiment is checked

    dataset_params(exp, registry)
    coerce_protocol(exp, registry)
    protocol = make_protocol(registry, exp.protocol.name, target="?", seed=0, **exp.protocol.params)
    evaluation = protocol.evaluation() if hasattr(protocol, "evaluation") else Evaluation()  # paper protocols fix it
    if not exp.models:
        raise CrossbenchError("no models to run; name at least one with --model")
    labels = [m.display for m in exp.models]
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise CrossbenchError(f"model label(s) {dup} appear more than once; give each a distinct label")
    coerce_components(exp, registry)
    env = RunEnv(registry=registry)
    built = {}
    for m in exp.models:
        built[m.display] = make_recommender(registry, m.name, m.params, where=f"model {m.display!r}")
        check = getattr(built[m.display], "check", None)  # Recommender.check; a duck-typed model may lack it
        if check is not None:
            check(env, where=f"model {m.display!r}")
    check_task(evaluation, built, protocol=exp.protocol.name, sampled_negatives=exp.sampled_negatives)
    registry.metrics(exp.metrics)
    if not exp.ks or any(k < 1 for k in exp.ks):
        raise CrossbenchError(f"cut-offs must be positive integers, got {short_repr(list(exp.ks))}")
    if max(exp.ks) > MAX_CUT_OFF:
        raise CrossbenchError(f"cut-off {max(exp.ks)} is larger than {MAX_CUT_OFF:,}, the most a ranking is cut at; "
                              "a cut-off beyond the catalogue retrieves every item anyway")
    if not exp.seeds:
        raise CrossbenchError("at least one seed is needed")
    check_seeds(exp.seeds)
    for what, values in (("seed", exp.seeds), ("cut-off", exp.ks), ("metric", exp.metrics)):
        repeated = sorted({v for v in values if list(values).count(v) > 1}, key=str)
        if repeated:
            raise CrossbenchError(f"{what}(s) {', '.join(map(str, repeated))} given more than once; list each once")
    check_primary(exp)
    if exp.chunk_size < 1:
        raise CrossbenchError(f"chunk_size must be positive, got {exp.chunk_size}")
    if exp.sampled_negatives < 0:
        raise CrossbenchError(f"sampled_negatives must be 0 (full ranking) or positive, got {exp.sampled_negatives}")
    if exp.sampled_negatives > MAX_CUT_OFF:
        raise CrossbenchError(f"sampled_negatives = {exp.sampled_negatives}: more negatives than any catalogue holds "
                              f"(at most {MAX_CUT_OFF:,}); a user's negatives are drawn from the items they did not take")
    if exp.sampling not in STRATEGIES:
        raise CrossbenchError(unknown_name_message("sampling strategy", exp.sampling, STRATEGIES))
    if exp.sampled_negatives or evaluation.kind == "sampled":
        full_only = [n for n, spec in registry.metrics(exp.metrics).items() if spec.inputs not in ("ranks", "graded")]
        if full_only:
            raise CrossbenchError(f"metric(s) {', '.join(full_only)} need the full ranking; drop them or set sampled_negatives = 0")
    return built


def check_simulation(settings: SimulationSettings, registry: Registry, *, dataset: str, where: str = "[simulation]") -> None:
    """Every setting in range and every name registered, before any work."""
    if settings.rounds < 1:
        raise CrossbenchError(f"{where}: rounds must be at least 1, got {settings.rounds}")
    if settings.k < 1:
        raise CrossbenchError(f"{where}: k must be at least 1, got {settings.k}")
    if settings.users is not None and settings.users < 1:
        raise CrossbenchError(f"{where}: users must be at least 1 (or left out for every test user), got {settings.users}")
    if settings.warm_users < 0:
        raise CrossbenchError(f"{where}: warm_users must be 0 or more, got {settings.warm_users}")
    if not 0 < settings.warm_holdout < 1:
        raise CrossbenchError(f"{where}: warm_holdout must be in (0, 1), got {settings.warm_holdout}")
    if not 0 < settings.probe < 1:
        raise CrossbenchError(f"{where}: probe must be in (0, 1), got {settings.probe}")
    if not settings.metrics:
        raise CrossbenchError(f"{where}: metrics must name at least one metric")
    specs = registry.metrics(settings.metrics)
    wrong = [n for n, s in specs.items() if s.inputs not in ("ranks", "graded")]
    if wrong:
        raise CrossbenchError(f"{where}: metric(s) {', '.join(wrong)} are not accuracy metrics of held-out items; use e.g. ndcg, recall")
    feedback_model(settings, registry, where=where).check(dataset=dataset, where=where)


def feedback_model(settings: SimulationSettings, registry: Registry, *, where: str = "[simulation]") -> Any:
    """A new instance of the feedback model (hyperparameters checked by name and type)."""
    if settings.feedback is None:
        raise CrossbenchError(f"{where}: no feedback model named; give --feedback NAME (see `crossbench list feedback-models`)")
    spec = registry.get("feedback-models", settings.feedback)
    params = coerce_kwargs(spec, settings.feedback_params, where=f"{where}: feedback model {settings.feedback!r}")
    return spec.factory(**params)


#: the largest cut-off accepted (a larger one is a typo: no catalogue this machine can rank is that long)
MAX_CUT_OFF = 2**31 - 1

def check_seeds(seeds: tuple[int, ...], *, where: str = "seeds") -> None:
    """Every seed an integer in ``[0, 2**32)``."""
    for seed in seeds:
        problem = seed_problem(seed)
        if problem:
            raise CrossbenchError(f"{where}: {short_repr(seed, 40)} {problem}")


def max_threads() -> int:
    """The most CPU threads ``--threads`` may ask for: 4 per core of this machine."""
    import os

    return 4 * (os.cpu_count() or 1)


def check_threads(threads: int | None) -> None:
    """``--threads`` is ``None`` (torch's default) or in ``[1, 4 x cores]``."""
    if threads is None:
        return
    if threads < 1:
        raise CrossbenchError(f"--threads must be at least 1, got {threads}")
    if threads > max_threads():
        raise CrossbenchError(f"--threads {short_repr(threads, 30)}: at most {max_threads()} (4 per core; this machine has "
                              f"{max_threads() // 4} core(s))")


def pick_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available; ``cuda`` and ``cuda:N`` need that device to exist."""
    import re

    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name != "cpu" and not re.fullmatch(r"cuda(:[0-9]{1,4})?", name):
        raise CrossbenchError(f"unknown device {short_repr(name, 40)}; use auto, cpu, cuda or cuda:N (N a device number, e.g. cuda:0)")
    if name.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise CrossbenchError(f"--device {name} was asked for, but torch sees no CUDA device; use --device cpu or auto")
        if ":" in name and int(name.split(":")[1]) >= count:
            raise CrossbenchError(f"--device {name}: torch sees {count} CUDA device(s), numbered 0 to {count - 1}")
    return torch.device(name)


def check_primary(exp: Experiment) -> None:
    """The primary metric is ``metric@k`` with the metric among the experiment's and k among its cut-offs."""
    if exp.primary is None:
        return
    name, sep, k = exp.primary.rpartition("@")
    if not sep or not k.isdigit():
        raise CrossbenchError(f"primary metric {exp.primary!r}: expected METRIC@K, e.g. {exp.metrics[0]}@{exp.ks[0]}")
    if name not in exp.metrics or int(k) not in exp.ks:
        raise CrossbenchError(f"primary metric {exp.primary!r}: its metric must be one of {', '.join(exp.metrics)} "
                              f"and its cut-off one of {', '.join(map(str, exp.ks))}")


def resolve_simulation(settings: SimulationSettings, exp: Experiment, registry: Registry) -> SimulationSettings:
    """``settings`` with what they leave out filled in, before any work.

    The feedback model: the default experiment's (hook ``crossbench_default_experiment``), else
    the only registered one. The metrics: the default experiment's when ``exp`` has them all,
    else ``exp``'s primary metric followed by its other accuracy metrics.
    """
    default = default_experiment(registry.pm)
    stated = default.simulation if default is not None else None
    changes: dict[str, Any] = {}
    if settings.feedback is None:
        if stated is not None and stated.feedback is not None:
            changes["feedback"], changes["feedback_params"] = stated.feedback, {**stated.feedback_params, **settings.feedback_params}
        else:
            names = sorted(registry.names("feedback-models"))
            if len(names) != 1:
                raise CrossbenchError(f"[simulation]: no feedback model named and {len(names)} registered ({', '.join(names) or 'none'}); "
                                      "name one with --feedback NAME or [simulation] feedback = \"NAME\"")
            changes["feedback"] = names[0]
    if not settings.metrics:
        if stated is not None and stated.metrics and set(stated.metrics) <= set(exp.metrics):
            changes["metrics"] = stated.metrics
        else:
            specs = registry.metrics(exp.metrics)
            accuracy = [n for n in exp.metrics if specs[n].inputs in ("ranks", "graded")]
            changes["metrics"] = tuple(dict.fromkeys([exp.primary_metric.rpartition("@")[0], *accuracy]))
    return dataclasses.replace(settings, **changes)
