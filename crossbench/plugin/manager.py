"""Building the plugin manager: hook specs, entry points, blocked plugins, broken plugins.

A plugin that cannot be imported, registered or validated does not stop the others: it is
recorded as a :class:`PluginFailure` (one line naming the plugin, its package and the cause),
unregistered, and skipped. Commands that do not need it work; a command that names one of
its components fails with that line (see :class:`crossbench.plugin.registry.Registry`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pluggy

from crossbench.errors import closest, shorten
from crossbench.plugin import hookspecs

if TYPE_CHECKING:
    import click

#: Comma-separated names of entry-point plugins to skip (e.g. ``synthetic,basic``).
DISABLE_ENV = "CROSSBENCH_DISABLE_PLUGINS"

#: The package column for plugins registered in process rather than through an entry point.
IN_PROCESS = "(registered in process)"


def disabled_plugins() -> set[str]:
    """Names listed in ``$CROSSBENCH_DISABLE_PLUGINS``."""
    raw = os.environ.get(DISABLE_ENV, "")
    return {part.strip() for part in raw.split(",") if part.strip()}


def hook_names() -> list[str]:
    """Every hook a plugin may implement (the ``@hookspec`` functions of :mod:`crossbench.plugin.hookspecs`)."""
    marker = f"{hookspecs.PROJECT}_spec"
    return sorted(name for name, obj in vars(hookspecs).items() if callable(obj) and hasattr(obj, marker))


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that was skipped, and why.

    ``provides`` lists the ``(kind, name)`` components it declared, where they could be read
    (a plugin that fails to import declares none).
    """

    plugin: str
    package: str
    cause: str
    provides: tuple[tuple[str, str], ...] = ()

    def line(self) -> str:
        """One line for a person: which plugin, from which package, what broke, what to do."""
        fix = f"disable it with {DISABLE_ENV}={self.plugin}" if self.package != IN_PROCESS else "fix it"
        return f"plugin {shorten(self.plugin, 60)!r} ({shorten(self.package, 60)}) is broken and was skipped: {shorten(self.cause, 300)}; {fix}"


class PluginManager(pluggy.PluginManager):
    """A pluggy manager that remembers each plugin's package, and the plugins it had to skip."""

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT)
        self.distributions: dict[str, tuple[str, str]] = {}
        #: plugins skipped because they failed to import, register or validate (in the order found)
        self.failures: list[PluginFailure] = []
        #: other problems worth one line each (e.g. an unknown name in ``$CROSSBENCH_DISABLE_PLUGINS``)
        self.warnings: list[str] = []

    def package_of(self, name: str) -> str:
        """The installed package that provides plugin ``name``."""
        return self.distributions.get(name, (IN_PROCESS, "-"))[0]

    def skip(self, name: str, cause: str, provides: Iterable[tuple[str, str]] = ()) -> PluginFailure:
        """Unregister plugin ``name`` (if registered), keep it out, and record why."""
        if self.get_plugin(name) is not None:
            self.unregister(name=name)
        self.set_blocked(name)
        failure = PluginFailure(name, self.package_of(name), shorten(cause, 600), tuple(provides))
        self.failures.append(failure)
        return failure

    def plugin_distributions(self) -> list[tuple[str, str, str]]:
        """``(plugin name, package, version)`` for every registered plugin, sorted by name."""
        out = []
        for name, plugin in self.list_name_plugin():
            if plugin is None:
                continue
            dist, version = self.distributions.get(name, (IN_PROCESS, "-"))
            out.append((name, dist, version))
        return sorted(out)


def get_plugin_manager(extra_plugins: Iterable[object] = (), *, load_entry_points: bool = True) -> PluginManager:
    """A new plugin manager with every entry-point plugin that is not disabled, plus ``extra_plugins``.

    Built-in plugins are ordinary entry points of the ``crossbench`` group. A plugin that
    fails to import or register (e.g. it implements a hook that does not exist) is recorded in
    ``pm.failures`` and skipped; nothing here raises for a broken plugin.
    """
    pm = PluginManager()
    pm.add_hookspecs(hookspecs)
    disabled = disabled_plugins()
    for name in disabled:
        pm.set_blocked(name)
    if load_entry_points:
        _load_entry_points(pm, disabled)
    for plugin in extra_plugins:
        _register(pm, plugin, _plugin_name(pm, plugin))
    return pm


def _load_entry_points(pm: PluginManager, disabled: set[str]) -> None:
    from importlib.metadata import entry_points

    found = list(entry_points(group=hookspecs.PROJECT))
    names = {ep.name for ep in found}
    for name in sorted(disabled - names):
        near = closest(name, names)
        hint = f"; did you mean {', '.join(map(repr, near))}?" if near else ""
        pm.warnings.append(
            f"{DISABLE_ENV} names {name!r}, which is not an installed plugin{hint} (installed: {', '.join(sorted(names)) or 'none'})"
        )
    for ep in found:
        if pm.is_blocked(ep.name) or pm.has_plugin(ep.name):
            continue
        dist = ep.dist.name if ep.dist is not None else "unknown package"
        pm.distributions[ep.name] = (dist, ep.dist.version if ep.dist is not None else "-")
        try:
            plugin = ep.load()
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - any import-time error, sys.exit() too: the plugin is skipped, not the command
            pm.skip(ep.name, f"importing {ep.value!r} raised {type(exc).__name__}: {_one_line(exc)}")
            continue
        _register(pm, plugin, ep.name)


def _register(pm: PluginManager, plugin: object, name: str) -> None:
    """Register ``plugin``; if pluggy refuses it or it implements an unknown hook, skip it."""
    try:
        pm.register(plugin, name=name)
    except Exception as exc:  # noqa: BLE001 - pluggy's validation errors (wrong hook arguments, ...)
        pm.skip(name, _one_line(exc))
        return
    unknown = [
        impl.function.__name__
        for caller in pm.get_hookcallers(plugin) or []
        if not caller.has_spec()
        for impl in caller.get_hookimpls()
        if impl.plugin is plugin and not impl.optionalhook
    ]
    if unknown:
        hooks = hook_names()
        causes = []
        for hook in sorted(set(unknown)):
            near = closest(hook, hooks, n=1)
            causes.append(f"it implements unknown hook {hook!r}" + (f" (did you mean {near[0]!r}?)" if near else ""))
        pm.skip(name, "; ".join(causes))


def add_commands(pm: PluginManager, group: click.Group) -> None:
    """Let every plugin add its sub-commands; one whose hook raises is skipped with one warning line.

    A plugin may only add commands: one that replaces a command already there (a built-in such
    as ``run``, or another plugin's) is skipped as a whole, its commands removed, with one
    warning line naming it and the command.
    """
    import click

    for impl in reversed(pm.hook.crossbench_commands.get_hookimpls()):
        before = dict(group.commands)
        cause = None
        try:
            impl.function(cli=group)
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - the other commands must still work
            cause = f"crossbench_commands() raised {type(exc).__name__}: {_one_line(exc)}"
        replaced = sorted(name for name, command in before.items() if group.commands.get(name) is not command)
        if replaced and cause is None:
            cause = (f"its command(s) {', '.join(map(repr, replaced))} would replace the command(s) of that name; "
                     "a plugin may add commands, not replace them: rename its command")
        if cause is not None:
            group.commands.clear()
            group.commands.update(before)
            click.echo(f"crossbench: warning: {pm.skip(impl.plugin_name, cause).line()}", err=True)


#: the most items, and seconds, read from what one hook returns (an endless generator is cut off there)
MAX_HOOK_ITEMS = 1_000
MAX_HOOK_SECONDS = 10.0


def hook_items(result: Iterable[object], *, hook: str) -> tuple[list[object], str | None]:
    """The items of one hook's result, read at most :data:`MAX_HOOK_ITEMS` or :data:`MAX_HOOK_SECONDS`;
    with what went wrong (an iterator that raised, or one that did not end), else ``None``."""
    import time

    items: list[object] = []
    deadline = time.monotonic() + MAX_HOOK_SECONDS
    try:
        for item in result:
            items.append(item)
            if len(items) > MAX_HOOK_ITEMS or time.monotonic() > deadline:
                return items[:MAX_HOOK_ITEMS], (f"{hook}() returned more than {MAX_HOOK_ITEMS:,} items or took more than "
                                                f"{MAX_HOOK_SECONDS:.0f} s to list them (read no further); return a list")
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - a generator that raises part-way: the plugin is skipped
        return items, f"{hook}() raised {type(exc).__name__} after {len(items)} item(s): {_one_line(exc)}"
    return items, None


def _one_line(exc: BaseException) -> str:
    return shorten(str(exc), 160) or type(exc).__name__


def _plugin_name(pm: PluginManager, plugin: object) -> str:
    """A readable, unique name for a plugin registered in process (module or class name)."""
    base = getattr(plugin, "__name__", None) or type(plugin).__qualname__
    name, n = str(base), 1
    while pm.has_plugin(name) or pm.is_blocked(name):
        n += 1
        name = f"{base}#{n}"
    return name
