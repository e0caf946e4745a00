"""Building the plugin manager: hook specs, entry points, blocked plugins."""

from __future__ import annotations

import os
from collections.abc import Iterable

import pluggy

from crossbench import hookspecs
from crossbench.errors import CrossbenchError

#: Comma-separated names of entry-point plugins to skip (e.g. ``synthetic,basic``).
DISABLE_ENV = "CROSSBENCH_DISABLE_PLUGINS"


def disabled_plugins() -> set[str]:
    """Names listed in ``$CROSSBENCH_DISABLE_PLUGINS``."""
    raw = os.environ.get(DISABLE_ENV, "")
    return {part.strip() for part in raw.split(",") if part.strip()}


class PluginManager(pluggy.PluginManager):
    """A pluggy manager that remembers which installed package provided each plugin."""

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT)
        self.distributions: dict[str, tuple[str, str]] = {}

    def plugin_distributions(self) -> list[tuple[str, str, str]]:
        """``(plugin name, package, version)`` for every registered plugin, sorted by name."""
        out = []
        for name, plugin in self.list_name_plugin():
            if plugin is None:
                continue
            dist, version = self.distributions.get(name, ("(registered in process)", "-"))
            out.append((name, dist, version))
        return sorted(out)


def get_plugin_manager(extra_plugins: Iterable[object] = (), *, load_entry_points: bool = True) -> PluginManager:
    """A new plugin manager with every entry-point plugin that is not disabled, plus ``extra_plugins``.

    Built-in plugins are ordinary entry points of the ``crossbench`` group. A plugin that
    fails to import is reported by name.
    """
    pm = PluginManager()
    pm.add_hookspecs(hookspecs)
    for name in disabled_plugins():
        pm.set_blocked(name)
    if load_entry_points:
        _load_entry_points(pm)
    for plugin in extra_plugins:
        pm.register(plugin, name=_plugin_name(pm, plugin))
    pm.check_pending()
    return pm


def _load_entry_points(pm: PluginManager) -> None:
    from importlib.metadata import entry_points

    for ep in entry_points(group=hookspecs.PROJECT):
        if pm.is_blocked(ep.name) or pm.has_plugin(ep.name):
            continue
        try:
            plugin = ep.load()
        except Exception as exc:  # report which plugin broke, not a bare traceback
            dist = ep.dist.name if ep.dist else "unknown package"
            raise CrossbenchError(
                f"plugin {ep.name!r} (entry point {ep.value!r} of {dist}) failed to import: "
                f"{type(exc).__name__}: {exc}; fix or uninstall it, or disable it with "
                f"{DISABLE_ENV}={ep.name}"
            ) from exc
        pm.register(plugin, name=ep.name)
        if ep.dist is not None:
            pm.distributions[ep.name] = (ep.dist.name, ep.dist.version)



def _plugin_name(pm: PluginManager, plugin: object) -> str:
    """A readable, unique name for a plugin registered in process (module or class name)."""
    base = getattr(plugin, "__name__", None) or type(plugin).__qualname__
    name, n = str(base), 1
    while pm.has_plugin(name) or pm.is_blocked(name):
        n += 1
        name = f"{base}#{n}"
    return name
