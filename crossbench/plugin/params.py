"""Checking a component's keyword arguments against its factory, and converting them to the declared types.

Used for every dataset, model and component parameter before any work: an unknown or missing
keyword and a value of the wrong type are one line naming the parameter.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Union

if TYPE_CHECKING:
    from crossbench.plugin.specs import ComponentSpec


def check_kwargs(spec: ComponentSpec, params: Mapping[str, Any], *, where: str) -> None:
    """Raise a :class:`CrossbenchError` if ``params`` names a hyperparameter ``spec`` lacks, or
    leaves out one without a default (a dataset's ``path``): before anything is built."""
    from crossbench.errors import CrossbenchError, closest

    sig = inspect.signature(spec.factory)
    known = spec.hyperparameters()
    if not any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values()):
        for key in params:
            if key not in known:
                near = closest(key, known)
                hint = f"; did you mean {', '.join(map(repr, near))}?" if near else ""
                valid = ", ".join(sorted(known)) or "none"
                raise CrossbenchError(
                    f"{where}: {spec.name!r} has no hyperparameter {key!r}{hint} (valid: {valid}; "
                    f"`crossbench show {spec.name}` describes each)"
                )
    required = [k for k, default in known.items() if default is inspect.Parameter.empty and k not in params]
    if required:
        raise CrossbenchError(f"{where}: parameter(s) {', '.join(map(repr, required))} are required; give them, "
                              f"e.g. {required[0]}=VALUE in the experiment file or on the command line")


def coerce_kwargs(spec: ComponentSpec, params: Mapping[str, Any], *, where: str) -> dict[str, Any]:
    """``params`` checked by name (:func:`check_kwargs`) and converted to the types the factory declares.

    A ``bool`` parameter takes ``true``/``false`` (also as the strings ``"true"``, ``"False"``,
    ...); an ``int`` takes an integer or a string of one; a ``float`` an int, a float or a
    string of one. Anything else is refused with the parameter's name and the type expected,
    before any work starts. Parameters of other declared types are passed as they are.
    """
    from crossbench.errors import CrossbenchError, short_repr

    check_kwargs(spec, params, where=where)
    out = dict(params)
    for key, value in params.items():
        kinds = simple_kinds(_annotation(spec.factory, key))
        if not kinds or value is None and type(None) in kinds:
            continue
        converted = convert_value(value, kinds)
        if converted is REFUSED:
            expected = " or ".join(k.__name__ for k in kinds if k is not type(None))
            raise CrossbenchError(
                f"{where}: parameter {key!r} expects {expected}, got {short_repr(value, 60)} ({type(value).__name__})"
            )
        problem = range_problem(converted, seed=key == "seed" or key.endswith("_seed"))
        if problem:
            raise CrossbenchError(f"{where}: parameter {key!r} = {short_repr(value, 40)}: {problem}")
        out[key] = converted
    return out


def memory_bytes() -> int:
    """This machine's memory in bytes (0 when it cannot be read)."""
    import os

    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 0


def max_count() -> int:
    """The largest count (of users, items, dimensions...) a parameter may ask for: as many 4-byte
    values as this machine's memory holds; a larger one cannot be built here whatever it counts."""
    return max(memory_bytes() // 4, 2**31 - 1)


#: seeds are taken from [0, SEED_LIMIT): what NumPy's and torch's generators all accept
SEED_LIMIT = 2**32


def seed_problem(value: Any) -> str | None:
    """Why ``value`` is not a seed (an integer in ``[0, SEED_LIMIT)``), or ``None`` when it is one."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < SEED_LIMIT:
        return f"is not a seed; seeds are integers from 0 to {SEED_LIMIT - 1:,}"
    return None


def range_problem(value: Any, *, seed: bool = False) -> str | None:
    """What makes a converted parameter value unusable whatever the parameter: a float that is
    not finite, an integer beyond what this machine can hold (:func:`max_count`), a ``seed``
    outside ``[0, 2**32)``; else ``None``."""
    import math

    if seed and isinstance(value, int) and not isinstance(value, bool) and seed_problem(value):
        return seed_problem(value)
    if isinstance(value, float) and not math.isfinite(value):
        return "must be a finite number (not nan or inf)"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > max_count():
        gib = memory_bytes() / 2**30
        return (f"too large: this machine's {gib:.0f} GiB of memory holds at most {max_count():,} 4-byte values, "
                "so no size or count above that can be built here")
    return None


REFUSED = object()


def _annotation(factory: Callable[..., Any], name: str) -> Any:
    """The evaluated annotation of parameter ``name`` of ``factory`` (``None`` if it has none or it cannot be read).

    Each parameter's annotation is evaluated on its own, in the namespace of the function that
    declares it, so that a return annotation naming a class imported only for type checking
    (a plugin whose factory imports its torch module lazily) does not hide the parameters' types.
    """
    try:
        param = inspect.signature(factory).parameters.get(name)
    except (TypeError, ValueError):
        return None
    if param is None or param.annotation is param.empty:
        return None
    annotation = param.annotation
    if isinstance(annotation, str):
        target = factory.__init__ if isinstance(factory, type) else factory  # type: ignore[misc]
        namespace = getattr(inspect.unwrap(target), "__globals__", {})
        try:
            annotation = eval(annotation, dict(namespace))  # noqa: S307 - an annotation the factory's author wrote
        except Exception:  # noqa: BLE001 - unresolvable annotation: nothing to convert by
            return None
    return annotation


def simple_kinds(annotation: Any) -> tuple[type, ...]:
    """The plain types of ``bool``, ``int``, ``float``, ``str`` annotations (and their unions with None)."""
    import types
    import typing

    members = typing.get_args(annotation) if typing.get_origin(annotation) in (Union, types.UnionType) else (annotation,)
    simple = (bool, int, float, str, type(None))
    if not members or not all(m in simple for m in members) or members == (type(None),):
        return ()
    return tuple(members)


def convert_value(value: Any, kinds: tuple[type, ...]) -> Any:
    if isinstance(value, bool):
        return value if bool in kinds else REFUSED
    if bool in kinds and isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    if int in kinds:
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
    if float in kinds:
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                pass
    if str in kinds and isinstance(value, str):
        return value
    return REFUSED

