"""Checks of a registered spec against its kind's contract, run when the registry is built.

Nothing here builds a component or loads data: the checks read the factory's signature and
annotations and the search space only, so a broken spec is reported before any work starts.

- The factory must accept the keywords its kind is called with (:data:`CALL_KEYWORDS`) and
  take everything by keyword (no positional-only parameters).
- Encoders, fusions and scorers are built by name inside composed models and by the
  conformance kit, so every hyperparameter needs a default. Datasets and recommenders may
  have required keywords (a dataset's ``path``); they are checked when used, before any data
  loads (:func:`crossbench.plugin.interfaces.check_kwargs`).
- Every search-space parameter names a hyperparameter of the factory, once (a whole model may
  also name a component's, as ``fusion.heads``, checked when the model is built); its range is
  well formed (``low <= high``, positive bounds for a log scale, at least one choice); its
  type agrees with the factory's annotation (no :class:`~crossbench.plugin.specs.FloatParam`
  for an ``int``); and the factory's default, where there is one, lies in the range.
- A metric's ``compute`` accepts the three positional arguments of its ``inputs``.
"""

from __future__ import annotations

import inspect
import math
import typing
from typing import Any

from crossbench.errors import closest, short_repr
from crossbench.plugin.specs import COMPONENT_ROLES, CategoricalParam, ComponentSpec, FloatParam, IntParam, MetricSpec, Param

#: The keywords each kind's factory is called with, besides its hyperparameters.
CALL_KEYWORDS: dict[str, tuple[str, ...]] = {
    "datasets": (),
    "item-encoders": ("context", "domain"),
    "user-encoders": ("context", "domain"),
    "fusions": ("context",),
    "scorers": ("context",),
    "recommenders": (),
    "feedback-models": (),
    "protocols": ("target", "seed"),
}

#: Kinds built by name with no user-given hyperparameters: every hyperparameter needs a default.
BUILT_BY_NAME = ("item-encoders", "user-encoders", "fusions", "scorers")

#: Kinds that tuning never samples: a search space on one of them would be read by nothing.
UNTUNED = ("datasets", "protocols", "feedback-models")

#: The longest name a component may be registered under (it is typed on command lines and shown in tables).
MAX_SPEC_NAME = 100

#: Values optuna can store for a categorical parameter.
CHOICE_TYPES = (type(None), bool, int, float, str)


def spec_problems(kind: str, spec: ComponentSpec | MetricSpec) -> list[str]:
    """What is wrong with ``spec`` as a component of ``kind`` (empty when nothing is)."""
    if not isinstance(spec.name, str) or not spec.name.strip():
        return [f"a spec has no name (got {short_repr(spec.name)})"]
    if len(spec.name) > MAX_SPEC_NAME or not spec.name.isprintable():
        return [f"a spec's name {short_repr(spec.name, 60)} is not a name: at most {MAX_SPEC_NAME} printable characters"]
    if isinstance(spec, MetricSpec):
        return _metric_problems(spec)
    where = f"{_noun(kind)} {spec.name!r}"
    if not callable(spec.factory):
        return [f"{where}: factory {spec.factory!r} is not callable"]
    try:
        params = inspect.signature(spec.factory).parameters
    except (TypeError, ValueError) as exc:
        return [f"{where}: the signature of factory {_qualname(spec.factory)} cannot be read ({exc})"]
    problems = _signature_problems(kind, where, spec, params)
    if not problems:
        problems = _space_problems(kind, where, spec, params)
    if kind in UNTUNED and spec.search_space:
        problems.append(f"{where}: has a search_space, but {_noun(kind)}s are not tuned; drop it")
    return problems


def _signature_problems(kind: str, where: str, spec: ComponentSpec, params: typing.Mapping[str, inspect.Parameter]) -> list[str]:
    factory = _qualname(spec.factory)
    out: list[str] = []
    var_kw = any(p.kind == p.VAR_KEYWORD for p in params.values())
    positional = [p.name for p in params.values() if p.kind == p.POSITIONAL_ONLY]
    if positional:
        out.append(f"{where}: factory {factory} takes {', '.join(map(repr, positional))} by position only; "
                   "factories are called with keyword arguments")
    keywords = CALL_KEYWORDS.get(kind, ())
    missing = [k for k in keywords if k not in params and not var_kw]
    if missing:
        call = ", ".join(f"{k}=..." for k in keywords)
        out.append(f"{where}: factory {factory} does not accept keyword(s) {', '.join(map(repr, missing))}; "
                   f"{_noun(kind)} factories are called as factory({call}, **hyperparameters)")
    if kind in BUILT_BY_NAME:
        required = [
            p.name for p in params.values()
            if p.default is p.empty and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name not in keywords
        ]
        if required:
            out.append(f"{where}: factory {factory} requires {', '.join(map(repr, required))} without a default; "
                       f"{_noun(kind)}s are built by name, so give every hyperparameter a default")
    return out


def _space_problems(kind: str, where: str, spec: ComponentSpec, params: typing.Mapping[str, inspect.Parameter]) -> list[str]:
    out: list[str] = []
    space = spec.search_space
    if not isinstance(space, tuple | list):
        return [f"{where}: search_space must be a tuple of IntParam/FloatParam/CategoricalParam, got {type(space).__name__}"]
    var_kw = any(p.kind == p.VAR_KEYWORD for p in params.values())
    known = spec.hyperparameters()
    hints = _hints(spec.factory)
    seen: set[str] = set()
    for param in space:
        if not isinstance(param, IntParam | FloatParam | CategoricalParam):
            out.append(f"{where}: search space entry {param!r} is not an IntParam, FloatParam or CategoricalParam")
            continue
        label = f"{where}: search space parameter {param.name!r}"
        if param.name in seen:
            out.append(f"{label} is given twice")
            continue
        seen.add(param.name)
        role, dot, _ = param.name.partition(".")
        if dot and kind == "recommenders" and role in COMPONENT_ROLES:
            continue  # ``fusion.heads``: a component's hyperparameter, checked when the model is built
        if param.name not in known:
            if not var_kw:
                near = closest(param.name, known)
                hint = f"; did you mean {', '.join(map(repr, near))}?" if near else ""
                out.append(f"{label} is not a keyword of factory {_qualname(spec.factory)}{hint} "
                           f"(its hyperparameters: {', '.join(sorted(known)) or 'none'})")
            continue
        problem = _range_problem(param) or _type_problem(param, hints.get(param.name)) or _default_problem(param, known[param.name])
        if problem:
            out.append(f"{label} {problem}")
    return out


def _range_problem(param: Param) -> str | None:
    if isinstance(param, CategoricalParam):
        if not isinstance(param.choices, tuple | list) or not param.choices:
            return f"has no choices (got {param.choices!r}); give a non-empty tuple"
        odd = [c for c in param.choices if not isinstance(c, CHOICE_TYPES)]
        if odd:
            return f"has choices {odd!r} that are not None, bool, int, float or str"
        if len(set(map(repr, param.choices))) != len(param.choices):
            return f"repeats a choice in {param.choices!r}"
        return None
    kind = int if isinstance(param, IntParam) else (int, float)
    for bound in (param.low, param.high):
        if isinstance(bound, bool) or not isinstance(bound, kind) or not math.isfinite(bound):
            return f"has bound {bound!r}; {'IntParam bounds are integers' if kind is int else 'bounds are finite numbers'}"
    if param.low > param.high:
        return f"has low {param.low!r} above high {param.high!r}"
    if param.log and param.low <= 0:
        return f"is on a log scale but its low bound {param.low!r} is not positive"
    if isinstance(param, IntParam) and (isinstance(param.step, bool) or not isinstance(param.step, int) or param.step < 1):
        return f"has step {param.step!r}; use a positive integer"
    if isinstance(param, IntParam) and param.log and param.step != 1:
        return "is on a log scale with a step other than 1 (optuna cannot sample that)"
    return None


def _type_problem(param: Param, annotation: Any) -> str | None:
    from crossbench.plugin.params import convert_value, simple_kinds

    kinds = simple_kinds(annotation)
    if not kinds:
        return None  # unannotated or not a plain type: nothing to check against
    declared = " or ".join(k.__name__ for k in kinds)
    if isinstance(param, IntParam) and int not in kinds and float not in kinds:
        return f"is an IntParam, but the factory declares it {declared}"
    if isinstance(param, IntParam) and bool in kinds and int not in kinds:
        return f"is an IntParam, but the factory declares it {declared}"
    if isinstance(param, FloatParam) and float not in kinds:
        return f"is a FloatParam, but the factory declares it {declared}; use IntParam or CategoricalParam"
    if isinstance(param, CategoricalParam):
        from crossbench.plugin.params import REFUSED

        bad = [c for c in param.choices if not (c is None and type(None) in kinds) and convert_value(c, kinds) is REFUSED]
        if bad:
            return f"has choices {bad!r} that are not {declared} (the factory's annotation)"
    return None


def _default_problem(param: Param, default: Any) -> str | None:
    if default is inspect.Parameter.empty or default is None:
        return None
    if isinstance(param, CategoricalParam):
        return None if default in param.choices else f"does not include the factory's default {default!r} among its choices {param.choices!r}"
    if isinstance(default, bool) or not isinstance(default, int | float):
        return f"is numeric, but the factory's default is {default!r}"
    if not param.low <= default <= param.high:
        return f"has range [{param.low}, {param.high}], which does not hold the factory's default {default!r}"
    return None


def _metric_problems(spec: MetricSpec) -> list[str]:
    where = f"metric {spec.name!r}"
    if not callable(spec.compute):
        return [f"{where}: compute {spec.compute!r} is not callable"]
    try:
        inspect.signature(spec.compute).bind(None, None, None)
    except TypeError:
        return [f"{where}: compute {_qualname(spec.compute)} must accept three positional arguments "
                f"(for inputs={spec.inputs!r}: see MetricSpec)"]
    except ValueError:
        return []  # a builtin without a readable signature: trusted
    return []


def _hints(factory: Any) -> dict[str, Any]:
    target = factory.__init__ if isinstance(factory, type) else factory  # type: ignore[misc]
    try:
        return typing.get_type_hints(target)
    except Exception:  # noqa: BLE001 - unresolvable annotations: nothing to check against
        return {}


def _qualname(obj: Any) -> str:
    module = getattr(obj, "__module__", None)
    name = getattr(obj, "__qualname__", None) or type(obj).__qualname__
    return f"{module}.{name}" if module else str(name)


def _noun(kind: str) -> str:
    from crossbench.plugin.specs import NOUNS

    return NOUNS.get(kind, kind)
