"""One registry of every named component, fed only by plugin hooks."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, Union

import pluggy

from crossbench.errors import CrossbenchError, unknown_name_message
from crossbench.interfaces import ComponentSpec, MetricSpec, ProtocolSpec

#: kind (as used on the command line) -> hook name
KINDS: dict[str, str] = {
    "datasets": "crossbench_datasets",
    "item-encoders": "crossbench_item_encoders",
    "user-encoders": "crossbench_user_encoders",
    "fusions": "crossbench_fusions",
    "scorers": "crossbench_scorers",
    "recommenders": "crossbench_recommenders",
    "metrics": "crossbench_metrics",
    "protocols": "crossbench_protocols",
    "feedback-models": "crossbench_feedback_models",
}

#: singular nouns for messages
NOUNS: dict[str, str] = {
    "datasets": "dataset",
    "item-encoders": "item encoder",
    "user-encoders": "user encoder",
    "fusions": "fusion",
    "scorers": "scorer",
    "recommenders": "model",
    "metrics": "metric",
    "protocols": "protocol",
    "feedback-models": "feedback model",
}

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
    """Every component spec from every plugin, by kind and unique name."""

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self.pm = pm
        self._entries: dict[str, dict[str, Entry[Any]]] = {}
        for kind, hook_name in KINDS.items():
            self._entries[kind] = self._collect(kind, hook_name)

    def _collect(self, kind: str, hook_name: str) -> dict[str, Entry[Any]]:
        hook = getattr(self.pm.hook, hook_name)
        found: dict[str, Entry[Any]] = {}
        # Call each implementation on its own so that every spec is tied to its plugin.
        for impl in reversed(hook.get_hookimpls()):
            plugin = impl.plugin_name
            result = impl.function()
            if result is None:
                continue
            for spec in result:
                want = SPEC_TYPES.get(kind, ComponentSpec)
                if not isinstance(spec, want):
                    raise CrossbenchError(
                        f"plugin {plugin!r}: {hook_name}() returned {spec!r}, expected {want.__name__}"
                    )
                if spec.name in found:
                    other = found[spec.name].plugin
                    raise CrossbenchError(
                        f"{NOUNS[kind]} name {spec.name!r} is registered twice: by plugin {other!r} "
                        f"and by plugin {plugin!r}; rename one of them or disable a plugin with "
                        f"CROSSBENCH_DISABLE_PLUGINS"
                    )
                found[spec.name] = Entry(spec, plugin)
        return found

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
            raise CrossbenchError(unknown_name_message(NOUNS[kind], name, table))
        return table[name].spec

    def plugin_of(self, kind: str, name: str) -> str:
        """The plugin that registered ``name``."""
        self.get(kind, name)
        return str(self._kind(kind)[name].plugin)

    def metrics(self, names: Iterable[str]) -> Mapping[str, MetricSpec]:
        """Metric specs by name, in the order given."""
        return {name: self.get("metrics", name) for name in names}

    def _kind(self, kind: str) -> dict[str, Entry[Any]]:
        if kind not in self._entries:
            raise CrossbenchError(unknown_name_message("component kind", kind, KINDS))
        return self._entries[kind]
