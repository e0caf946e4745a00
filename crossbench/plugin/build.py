"""Building a recommender from its name and parameters, component parameters included.

A model's parameters are the keyword arguments of its factory (``dim=32``, ``fusion="attention"``)
plus, for models built from components, ``ROLE.NAME`` keys that set a hyperparameter of the
component in that role (``fusion.heads=2``, ``user_encoder.layers=3``; roles are the keys of
:data:`crossbench.plugin.specs.COMPONENT_ROLES`).

The search space of a model is its own ``search_space`` plus, under the role prefix, the
search space of each component it builds, except parameters the model's own space or its
given parameters already name (``lm-attention``'s ``n_experts`` drives its item encoder's
``n_experts``; tuning both would tune one thing twice).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from crossbench.data.protocols import Protocol
from crossbench.errors import CrossbenchError, closest, unknown_name_message
from crossbench.plugin.interfaces import Recommender
from crossbench.plugin.params import coerce_kwargs
from crossbench.plugin.registry import Registry
from crossbench.plugin.specs import COMPONENT_ROLES, ComponentSpec, Param


def split_params(params: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """``{"dim": 32, "fusion.heads": 2}`` -> ``({"dim": 32}, {"fusion": {"heads": 2}})``."""
    own: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for key, value in params.items():
        role, dot, name = key.partition(".")
        if dot:
            nested.setdefault(role, {})[name] = value
        else:
            own[key] = value
    return own, nested


def make_recommender(registry: Registry, name: str, params: Mapping[str, Any], *, where: str) -> Recommender:
    """The recommender ``name`` built with ``params``; unknown names and keys are errors naming ``where``."""
    spec: ComponentSpec = registry.get("recommenders", name)
    own, nested = split_params(params)
    own = coerce_kwargs(spec, own, where=where)
    model = spec.factory(**own)
    if nested:
        parts = model.components()
        for role, values in nested.items():
            if role not in parts:
                have = ", ".join(sorted(parts)) or "none: it is not built from components"
                hint = unknown_name_message("component role", role, COMPONENT_ROLES) if role not in COMPONENT_ROLES else ""
                raise CrossbenchError(
                    f"{where}: {name!r} has no component {role!r} to set {', '.join(sorted(values))} on "
                    f"(its components: {have}){'; ' + hint if hint else ''}"
                )
            component = registry.get(COMPONENT_ROLES[role], parts[role].name)
            values = coerce_kwargs(component, values, where=f"{where}: {role} {parts[role].name!r}")
            model.set_component_params(role, values)
    return model


def own_space(registry: Registry, name: str, params: Mapping[str, Any]) -> list[Param]:
    """The model's own search space, less the parameters given in ``params``."""
    spec: ComponentSpec = registry.get("recommenders", name)
    return [p for p in spec.search_space if p.name not in params]


def component_space(registry: Registry, name: str, model: Recommender, params: Mapping[str, Any]) -> list[Param]:
    """The search spaces of ``model``'s components, names prefixed by role.

    Left out: parameters given in ``params`` (as ``ROLE.NAME``), parameters the component's
    reference sets and the model's own space or ``params`` names (the model's factory drives
    them), and parameters the user set inside a component table.
    """
    spec: ComponentSpec = registry.get("recommenders", name)
    own_names = {p.name for p in spec.search_space} | set(params)
    out: list[Param] = []
    for role, ref in model.components().items():
        component: ComponentSpec = registry.get(COMPONENT_ROLES[role], ref.name)
        for p in component.search_space:
            key = f"{role}.{p.name}"
            if key in params or p.name in own_names:
                continue
            if p.name in ref.params and _user_fixed(params, role, p.name):
                continue
            out.append(replace(p, name=key))
    return out


def _user_fixed(params: Mapping[str, Any], role: str, name: str) -> bool:
    """True when the user set ``name`` inside the component table of ``role`` (``fusion = {name=..., heads=2}``)."""
    ref = params.get(role)
    inner = getattr(ref, "params", None)
    return isinstance(inner, Mapping) and name in inner


def default_values(registry: Registry, name: str, model: Recommender, space: list[Param]) -> dict[str, Any]:
    """The values ``model`` (built without the space's parameters) uses for each parameter of ``space``.

    A model's own parameter takes its factory's default; ``ROLE.NAME`` takes the value the
    model gives its component, else the component factory's default. Parameters without a
    default are left out.
    """
    spec: ComponentSpec = registry.get("recommenders", name)
    own = spec.hyperparameters()
    parts = model.components()
    out: dict[str, Any] = {}
    for p in space:
        role, dot, key = p.name.partition(".")
        if not dot:
            value = own.get(p.name, inspect.Parameter.empty)
        elif role in parts:
            ref = parts[role]
            value = ref.params.get(key, registry.get(COMPONENT_ROLES[role], ref.name).hyperparameters().get(key, inspect.Parameter.empty))
        else:
            value = inspect.Parameter.empty
        if value is not inspect.Parameter.empty and value is not None:
            out[p.name] = value
    return out


def make_protocol(registry: Registry, name: str, *, target: str, seed: int, **params: Any) -> Protocol:
    """The registered protocol ``name`` for one ``target`` domain; unknown names or parameters are errors."""
    spec = registry.get("protocols", name)
    known = spec.parameters() if hasattr(spec, "parameters") else {}
    for key in params:
        if key not in known:
            near = closest(key, known)
            hint = f"; did you mean {', '.join(map(repr, near))}?" if near else ""
            raise CrossbenchError(f"protocol {name!r} has no parameter {key!r}{hint} (valid: {', '.join(sorted(known))})")
    protocol = spec.factory(target=target, seed=seed, **params)
    if not isinstance(protocol, Protocol):
        raise CrossbenchError(f"protocol {name!r}: its factory returned {type(protocol).__name__}, not a crossbench Protocol")
    return protocol
