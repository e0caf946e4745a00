"""``crossbench data``: fetch public datasets and describe any dataset.

The group reads the registry from the click context object (anything with a ``.registry``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import click

from crossbench.data.fetch import downloads_of, fetch
from crossbench.data.stats import domain_stats, overlap_stats, protocol_stats, render
from crossbench.errors import CrossbenchError
from crossbench.experiment import parse_assignment
from crossbench.interfaces import check_kwargs


def parse_assignments(pairs: Sequence[str], *, option: str) -> dict[str, Any]:
    """``KEY=VALUE`` strings (VALUE read as TOML, else as a string) -> a dict, as ``crossbench run`` reads them."""
    return dict(parse_assignment(pair, option=option) for pair in pairs)


def _registry() -> Any:
    obj = click.get_current_context().obj
    registry = getattr(obj, "registry", None)
    if registry is None:
        raise CrossbenchError("internal: the data commands need a registry in the click context")
    return registry


def _fail(exc: CrossbenchError) -> None:
    raise click.ClickException(str(exc))


@click.group("data")
def data_group() -> None:
    """Download public datasets and describe datasets (sizes, overlap, cold users)."""


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
        if not downloads:
            fetchable = [n for n in registry.names("datasets") if downloads_of(registry.get("datasets", n).factory)]
            raise CrossbenchError(
                f"dataset {name!r} has no public download; get its files yourself and pass --dataset-param path=DIR "
                f"(downloadable: {', '.join(fetchable) or 'none'})"
            )
        for download in downloads:
            path = fetch(name, download, cache_dir=cache_dir, progress=progress)
            click.echo(str(path))
    except CrossbenchError as exc:
        _fail(exc)


@data_group.command("stats")
@click.argument("name")
@click.option("--dataset-param", "dataset_params", multiple=True, metavar="KEY=VALUE", help="dataset hyperparameter")
@click.option("--protocol", default=None, help="only this protocol (cold-start, warm); default: cold-start 20/50/80% and warm")
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
        spec = _registry().get("datasets", name)
        params = parse_assignments(dataset_params, option="--dataset-param")
        check_kwargs(spec, params, where=f"dataset {name!r}")
        data = spec.factory(**params).load()
        targets = None if target in (None, "all") else [t.strip() for t in str(target).split(",")]
        for t in targets or ():
            data.domain(t)
        pparams = parse_assignments(protocol_params, option="--protocol-param")
        if as_json:
            out = {
                "dataset": data.name, "fingerprint": data.fingerprint(), "users": data.n_users,
                "domains": domain_stats(data), "overlap": overlap_stats(data),
                "protocols": protocol_stats(data, targets=targets, protocol=protocol, seed=seed, params=pparams),
                "preprocessing": data.meta.get("preprocessing", []),
            }
            click.echo(json.dumps(out, indent=2, default=str))
        else:
            click.echo(render(data, targets=targets, protocol=protocol, seed=seed, params=pparams))
    except CrossbenchError as exc:
        _fail(exc)
