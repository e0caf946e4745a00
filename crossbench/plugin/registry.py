"""One registry of every named component, fed only by plugin hooks."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, Union

import pluggy

from crossbench.errors import CrossbenchError, short_repr, shorten, unknown_name_message
from crossbench.plugin.checks import spec_problems
from crossbench.plugin.manager import DISABLE_ENV, PluginFailure, hook_items
from crossbench.plugin.specs import KINDS, NOUNS, ComponentSpec, MetricSpec, ProtocolSpec

#: kinds whose specs are not plain :class:`ComponentSpec`
SPEC_TYPES: dict[str, type[ComponentSpec] | type[MetricSpec]] = {"metrics": MetricSpec, "protocols": ProtocolSpec}

S = TypeVar("S", ComponentSpec, MetricSpec)
Spec = Union[ComponentSpec, MetricSpec]


@dataclass(frozen=True)
class Entry(Generic[S]):
    """A registered spec and the plugin that provided it."""

    spec: S
    plugin: str


class Registry:
    """Every component spec from every plugin, by kind and unique name.

    Built from a plugin manager, it calls each plugin's hooks on their own and checks what they
    return (:mod:`crossbench.plugin.checks`). A plugin whose hook raises or returns something else
    than a list of valid specs is skipped as a whole (:meth:`PluginManager.skip`), so that it is
    either fully available or not at all; the other plugins are unaffected.

    Duplicates: when two plugins register the same name for one kind, neither is used. Which
    copy would win would otherwise depend on install order, and a benchmark must not silently
    run another author's component under a familiar name; using the name is an error naming
    both plugins (and the rest of both plugins stays available).
    """

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self.pm = pm
        self._entries: dict[str, dict[str, Entry[Any]]] = {}
        #: (kind, name) -> the plugins that each registered it
        self.conflicts: dict[tuple[str, str], tuple[str, ...]] = {}
        collected = self._collect_all()
        for kind in KINDS:
            table: dict[str, list[Entry[Any]]] = {}
            for plugin, specs in collected.items():
                for spec in specs.get(kind, ()):
                    table.setdefault(spec.name, []).append(Entry(spec, plugin))
            self._entries[kind] = {name: found[0] for name, found in table.items() if len(found) == 1}
            for name, found in table.items():
                if len(found) > 1:
                    self.conflicts[(kind, name)] = tuple(sorted(e.plugin for e in found))

    def _collect_all(self) -> dict[str, dict[str, list[Any]]]:
        """plugin name -> kind -> its checked specs; plugins that fail a check are skipped."""
        out: dict[str, dict[str, list[Any]]] = {}
        broken: dict[str, tuple[list[str], list[tuple[str, str]]]] = {}
        for kind, hook_name in KINDS.items():
            # Call each implementation on its own so that every spec is tied to its plugin.
            for impl in reversed(getattr(self.pm.hook, hook_name).get_hookimpls()):
                plugin = impl.plugin_name
                specs, problems = _call(kind, hook_name, impl.function)
                if problems:
                    causes, provides = broken.setdefault(plugin, ([], []))
                    causes.extend(problems)
                    provides.extend((kind, s.name) for s in specs if isinstance(getattr(s, "name", None), str))
                out.setdefault(plugin, {})[kind] = specs
        skip = getattr(self.pm, "skip", None)
        for plugin, (causes, provides) in broken.items():
            del out[plugin]
            if skip is None:  # a plain pluggy manager: no isolation to offer
                raise CrossbenchError(f"plugin {plugin!r}: {causes[0]}")
            skip(plugin, "; ".join(causes), provides)
        return out

    def failures(self) -> list[PluginFailure]:
        """The plugins that were skipped, in the order found."""
        return list(getattr(self.pm, "failures", []))

    def problems(self) -> list[str]:
        """One line per skipped plugin, per unusable duplicate name and per other plugin warning."""
        lines = [f.line() for f in self.failures()]
        lines += [self.conflict_line(kind, name) for kind, name in sorted(self.conflicts)]
        return lines + list(getattr(self.pm, "warnings", []))

    def conflict_line(self, kind: str, name: str) -> str:
        """The one line saying which plugins registered ``name`` of ``kind``, and what to do."""
        package = getattr(self.pm, "package_of", lambda _: "?")
        who = " and ".join(f"plugin {p!r} ({package(p)})" for p in self.conflicts[(kind, name)])
        return (f"{NOUNS[kind]} name {name!r} is registered by {who}, so neither is used; "
                f"rename one of them or disable a plugin with {DISABLE_ENV}")

    def names(self, kind: str) -> list[str]:
        """Sorted names registered for ``kind``."""
        return sorted(self._kind(kind))

    def entries(self, kind: str) -> Iterator[Entry[Any]]:
        """Entries of ``kind`` sorted by name."""
        table = self._kind(kind)
        return (table[name] for name in sorted(table))

    def get(self, kind: str, name: str) -> Any:
        """The spec named ``name`` of ``kind``; an unknown name suggests the closest ones."""
        table = self._kind(kind)
        if name not in table:
            raise CrossbenchError(self._missing(kind, name))
        return table[name].spec

    def plugin_of(self, kind: str, name: str) -> str:
        """The plugin that registered ``name``."""
        self.get(kind, name)
        return str(self._kind(kind)[name].plugin)

    def metrics(self, names: Iterable[str]) -> Mapping[str, MetricSpec]:
        """Metric specs by name, in the order given."""
        return {name: self.get("metrics", name) for name in names}

    def _missing(self, kind: str, name: str) -> str:
        """Why ``name`` is not available: a duplicate, a skipped plugin's component, or unknown."""
        if (kind, name) in self.conflicts:
            return self.conflict_line(kind, name)
        failures = self.failures()
        for f in failures:
            if (kind, name) in f.provides:
                return f"{NOUNS[kind]} {name!r} is not available: {f.line()}"
        unknown = [f for f in failures if not f.provides]  # these might have provided it
        msg = unknown_name_message(NOUNS[kind], name, self._kind(kind), listed=not unknown)  # the broken plugins say more
        if unknown:
            msg += "; it may come from a broken plugin: " + " | ".join(f.line() for f in unknown)
        return msg

    def _kind(self, kind: str) -> dict[str, Entry[Any]]:
        if kind not in self._entries:
            raise CrossbenchError(unknown_name_message("component kind", kind, KINDS))
        return self._entries[kind]


def _call(kind: str, hook_name: str, function: Any) -> tuple[list[Any], list[str]]:
    """The specs one hook implementation returns, and what is wrong with them."""
    want = SPEC_TYPES.get(kind, ComponentSpec)
    try:
        result = function()
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - a raising hook skips its plugin, not the command
        return [], [f"{hook_name}() raised {type(exc).__name__}: {shorten(str(exc), 160)}"]
    if result is None:
        return [], []
    if isinstance(result, ComponentSpec | MetricSpec):
        return [result], [f"{hook_name}() returned a bare {type(result).__name__} ({short_repr(result.name)}); return a list: [spec]"]
    if isinstance(result, str | bytes | Mapping) or not isinstance(result, Iterable):
        return [], [f"{hook_name}() returned {short_repr(result)} ({type(result).__name__}); return a list of {want.__name__}"]
    specs: list[Any] = []
    items, problem = hook_items(result, hook=hook_name)
    if problem:  # an iterator that raised or did not end: the plugin is skipped whatever it listed
        return [], [problem]
    problems: list[str] = []
    for spec in items:
        if not isinstance(spec, want):
            problems.append(f"{hook_name}() returned {short_repr(spec)} in its list, expected {want.__name__}")
            continue
        if any(s.name == spec.name for s in specs):
            problems.append(f"{hook_name}() returns two {NOUNS[kind]}s named {spec.name!r}")
        problems.extend(spec_problems(kind, spec))
        specs.append(spec)
    return specs, problems
