"""Every hyperparameter of a component: `crossbench show NAME` and `crossbench list KIND --params`.

Each row comes from the registered spec, so the listing cannot drift from what runs and what
tuning searches: the name, type and default from the factory's signature, the searched range
from the spec's ``search_space`` (for models built from components, also each component's
space under its role prefix, as :mod:`crossbench.plugin.build` hands it to tuning), and the
meaning from the spec's ``meanings`` (the shared training settings' from
:data:`crossbench.train.settings.TRAINING_MEANINGS`).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import click

from crossbench.errors import CrossbenchError, unknown_name_message
from crossbench.plugin.registry import KINDS, NOUNS, Registry
from crossbench.plugin.specs import COMPONENT_ROLES, CategoricalParam, ComponentSpec, FloatParam, IntParam, Param
from crossbench.train.settings import TRAINING_FIELDS, TRAINING_MEANINGS

#: What a table says where a value is absent.
NONE = "-"


@dataclass(frozen=True)
class ParamRow:
    """One hyperparameter as `crossbench show` prints it."""

    name: str
    type: str
    default: str
    searched: str
    meaning: str


@dataclass(frozen=True)
class ParamTable:
    """A component's hyperparameters in three groups: its own, the shared training settings, and
    its components' hyperparameters that tuning searches under ``ROLE.NAME``."""

    own: tuple[ParamRow, ...]
    training: tuple[ParamRow, ...]
    components: tuple[ParamRow, ...]
    note: str = ""


def format_range(param: Param) -> str:
    """``[low, high]`` (with ``log`` and ``step``) or ``{a, b, c}``, as tuning samples it."""
    if isinstance(param, CategoricalParam):
        return "{" + ", ".join(_value(c) for c in param.choices) + "}"
    text = f"[{_value(param.low)}, {_value(param.high)}]"
    if isinstance(param, IntParam) and param.step != 1:
        text += f" step {param.step}"
    if isinstance(param, (IntParam, FloatParam)) and param.log:
        text += " log"
    return text


def _value(value: Any) -> str:
    if value is inspect.Parameter.empty:
        return "(required)"
    if isinstance(value, str):
        return repr(value)
    if hasattr(value, "to_dict"):  # a ComponentRef default
        return str(value.to_dict()["name"]) + (f" {value.to_dict()['params']}" if value.to_dict()["params"] else "")
    return str(value)


def _type(factory: Any, name: str) -> str:
    try:
        param = inspect.signature(factory).parameters[name]
    except (KeyError, TypeError, ValueError):
        return NONE
    annotation = param.annotation
    if annotation is param.empty:
        return NONE
    return annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))


def _rows(spec: ComponentSpec, names: list[str], defaults: dict[str, Any], space: dict[str, Param], meanings: Any) -> tuple[ParamRow, ...]:
    return tuple(
        ParamRow(
            name=n, type=_type(spec.factory, n), default=_value(defaults[n]),
            searched=format_range(space[n]) if n in space else NONE, meaning=meanings.get(n, NONE),
        )
        for n in names
    )


def param_table(registry: Registry, kind: str, name: str) -> ParamTable:
    """The hyperparameters of component ``name`` of ``kind`` (a key of :data:`KINDS`)."""
    spec = registry.get(kind, name)
    if not isinstance(spec, ComponentSpec):  # a metric: computed, not configured
        return ParamTable((), (), (), note="no hyperparameters")
    defaults = spec.parameters() if hasattr(spec, "parameters") else spec.hyperparameters()
    space = {p.name: p for p in spec.search_space}
    shared = set(TRAINING_FIELDS) <= set(defaults)
    own = [n for n in defaults if not (shared and n in TRAINING_FIELDS)]
    training = [n for n in TRAINING_FIELDS if shared]
    meanings = {**TRAINING_MEANINGS, **spec.meanings} if shared else dict(spec.meanings)
    components, note = _component_rows(registry, name) if kind == "recommenders" else ((), "")
    return ParamTable(
        own=_rows(spec, own, defaults, space, meanings), training=_rows(spec, training, defaults, space, meanings),
        components=components, note=note,
    )


def _component_rows(registry: Registry, name: str) -> tuple[tuple[ParamRow, ...], str]:
    """The component hyperparameters tuning searches for model ``name`` built with its defaults."""
    from crossbench.plugin.build import component_space, default_values, make_recommender

    try:
        model = make_recommender(registry, name, {}, where=f"model {name!r}")
    except Exception as exc:  # noqa: BLE001 - a model that needs more than its defaults: its own rows still print
        return (), f"its components' search spaces need a model built with its defaults, which failed ({type(exc).__name__}: {exc})"
    parts = model.components()
    space = component_space(registry, name, model, {})
    defaults = default_values(registry, name, model, space)
    rows = []
    for p in space:
        role, _, key = p.name.partition(".")
        component: ComponentSpec = registry.get(COMPONENT_ROLES[role], parts[role].name)
        rows.append(ParamRow(
            name=p.name, type=_type(component.factory, key), default=_value(defaults.get(p.name, inspect.Parameter.empty)),
            searched=format_range(p), meaning=f"({parts[role].name}) " + component.meanings.get(key, NONE),
        ))
    return tuple(rows), ""


def render(registry: Registry, kind: str, name: str) -> str:
    """The text `crossbench show` prints for one component."""
    spec = registry.get(kind, name)
    table = param_table(registry, kind, name)
    lines = [f"{name}  ({NOUNS[kind]}, plugin {registry.plugin_of(kind, name)})", f"  {spec.description}".rstrip()]
    groups = [
        ("hyperparameters", table.own),
        ("training settings (shared by every composed model)", table.training),
        ("component hyperparameters (tuning searches them; set them as ROLE.NAME)", table.components),
    ]
    rows = [r for _, group in groups for r in group]
    header = ParamRow("name", "type", "default", "searched", "meaning")
    widths = [max(len(getattr(r, f)) for r in [header, *rows]) for f in ("name", "type", "default", "searched")]

    def line(r: ParamRow) -> str:
        cells = [f"{getattr(r, f):<{w}}" for f, w in zip(("name", "type", "default", "searched"), widths)]
        return "    " + "  ".join([*cells, r.meaning]).rstrip()

    if not rows:
        lines.append(f"  {table.note or 'no hyperparameters'}")
        return "\n".join(lines)
    lines.append(line(header))
    for title, group in groups:
        if group:
            lines.append(f"  {title}:")
            lines.extend(line(r) for r in group)
    if table.note:
        lines.append(f"  note: {table.note}")
    return "\n".join(lines)


def matches(registry: Registry, name: str) -> Iterator[str]:
    """The kinds that register a component called ``name``."""
    return (kind for kind in KINDS if name in registry.names(kind))


@click.command()
@click.argument("name")
@click.option("--kind", type=click.Choice([*KINDS, "models"]), help="Only the component of this kind (where several kinds share NAME).")
def show(name: str, kind: str | None) -> None:
    """Every hyperparameter of component NAME: type, default, searched range and meaning.

    Includes the shared training settings of composed models and the hyperparameters of their
    components that tuning searches; set any of them with --model-param KEY=VALUE or in the
    experiment file.
    """
    from crossbench.cli.common import current_state

    registry = current_state().registry
    kinds = [("recommenders" if kind == "models" else kind)] if kind else list(matches(registry, name))
    if not kinds or name not in registry.names(kinds[0]):
        pool = {n for k in (kinds or KINDS) for n in registry.names(k)}
        raise CrossbenchError(unknown_name_message(f"{NOUNS[kinds[0]]}" if kinds else "component", name, pool)
                              + " (see `crossbench list KIND`)")
    click.echo("\n\n".join(render(registry, k, name) for k in kinds))
