"""Domains made of movie genres: one genre, or a group of genres minus some others.

A domain spec is a string, either a plain genre name (``"Comedy"``: the domain of that one
genre, named after it) or ``NAME=G1|G2|...`` optionally followed by ``!X1|X2|...``:

    thriller=Thriller|Crime|Mystery!Comedy

is the domain ``thriller`` of movies with Thriller, Crime or Mystery among their genres and
not Comedy. Genre names hold hyphens and apostrophes (``Sci-Fi``, ``Children's``), so ``|``,
``=`` and ``!`` are the only separators; spaces around the pieces are ignored.

A movie *matches* a domain when it has at least one included genre and no excluded one.
``genre_rule="first"`` puts it in the first listed domain it matches;
``genre_rule="exclusive"`` keeps it only when it matches exactly one domain. Movies that
match none are dropped. When every domain is a single genre without exclusions (the only
kind of domain before groups existed), ``"first"`` keeps its original meaning: the movie's
own first genre among the chosen ones decides, so those datasets are unchanged.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from crossbench.data.io import DataFileError
from crossbench.data.preprocess import as_domains
from crossbench.errors import CrossbenchError, closest
from crossbench_datasets.base import RawData, frame

RULES = ("first", "exclusive")
EXAMPLE = "e.g. 'thriller=Thriller|Crime|Mystery!Comedy'"


@dataclass(frozen=True)
class GenreDomain:
    """A domain: movies with any genre of ``include`` and none of ``exclude``."""

    name: str
    include: tuple[str, ...]
    exclude: tuple[str, ...] = ()

    @property
    def single(self) -> bool:
        """One genre, nothing excluded: the kind of domain that predates groups."""
        return len(self.include) == 1 and not self.exclude

    @property
    def spec(self) -> str:
        """The spec string this domain is parsed from (in canonical form)."""
        if self.single and self.name == self.include[0]:
            return self.name
        text = f"{self.name}={'|'.join(self.include)}"
        return text + (f"!{'|'.join(self.exclude)}" if self.exclude else "")

    def matches(self, genres: Collection[str]) -> bool:
        return any(g in genres for g in self.include) and not any(g in genres for g in self.exclude)


def _genre_list(text: str, *, spec: str, dataset: str, what: str) -> tuple[str, ...]:
    genres = [g.strip() for g in text.split("|")]
    if not any(genres):
        raise CrossbenchError(
            f"dataset {dataset!r}: domain spec {spec!r} has an empty {what} list; "
            f"list genres separated by '|', {EXAMPLE}"
        )
    if not all(genres):
        raise CrossbenchError(
            f"dataset {dataset!r}: domain spec {spec!r} has an empty genre in its {what} list "
            f"(two '|' in a row, or one at an end); remove the extra '|'"
        )
    return tuple(dict.fromkeys(genres))


def parse_domain(spec: str, *, dataset: str) -> GenreDomain:
    """Parse one domain spec (see the module docstring); errors name the spec and the fix."""
    text = str(spec).strip()
    if "=" not in text:
        if "|" in text or "!" in text:
            raise CrossbenchError(
                f"dataset {dataset!r}: domain spec {text!r} combines genres but has no name; "
                f"write NAME={text}, {EXAMPLE}"
            )
        if not text:
            raise CrossbenchError(f"dataset {dataset!r}: empty domain spec; give a genre or NAME=G1|G2, {EXAMPLE}")
        return GenreDomain(name=text, include=(text,))
    name, _, body = text.partition("=")
    name = name.strip()
    if not name:
        raise CrossbenchError(f"dataset {dataset!r}: domain spec {text!r} has an empty name; write NAME={body}")
    if "=" in body:
        raise CrossbenchError(
            f"dataset {dataset!r}: domain spec {text!r} has more than one '='; one domain is NAME=G1|G2!X1, "
            "and domains are separated by ','"
        )
    included, bang, excluded = body.partition("!")
    if "!" in excluded:
        raise CrossbenchError(
            f"dataset {dataset!r}: domain spec {text!r} has more than one '!'; list every excluded genre after "
            "one '!', separated by '|'"
        )
    include = _genre_list(included, spec=text, dataset=dataset, what="include")
    exclude = _genre_list(excluded, spec=text, dataset=dataset, what="exclude") if bang else ()
    both = [g for g in include if g in exclude]
    if both:
        raise CrossbenchError(
            f"dataset {dataset!r}: domain spec {text!r} both includes and excludes {', '.join(map(repr, both))}; "
            "remove it from one side"
        )
    return GenreDomain(name=name, include=include, exclude=exclude)


def parse_domains(specs: Sequence[str] | str, *, dataset: str) -> tuple[GenreDomain, ...]:
    """Parse a list of specs (or one comma-separated string); domain names must be unique."""
    domains = tuple(parse_domain(s, dataset=dataset) for s in as_domains(specs, dataset=dataset))
    names = [d.name for d in domains]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        specs_of = [d.spec for d in domains if d.name in dupes]
        raise CrossbenchError(
            f"dataset {dataset!r}: domain name(s) {', '.join(map(repr, dupes))} used by more than one spec "
            f"({', '.join(map(repr, specs_of))}); give each domain its own NAME="
        )
    return domains


def check_genres(domains: Sequence[GenreDomain], present: Iterable[str], *, where: Path | str) -> None:
    """Error for the first genre of a spec that no movie in ``where`` has, with the closest names."""
    pool = sorted(set(present))
    for d in domains:
        for g in (*d.include, *d.exclude):
            if g in pool:
                continue
            near = closest(g, pool)
            hint = f"; did you mean {', '.join(map(repr, near))}?" if near else ""
            spec = "" if d.spec == g else f" in domain spec {d.spec!r}"
            raise DataFileError(f"{where}: no movie has the genre {g!r}{spec}{hint} (genres: {', '.join(pool)})")


def assign(genres: Sequence[str], domains: Sequence[GenreDomain], *, rule: str) -> str | None:
    """The domain name a movie with ``genres`` (in its own order) goes to, or ``None``."""
    if rule == "exclusive":
        found = [d.name for d in domains if d.matches(genres)]
        return found[0] if len(found) == 1 else None
    if all(d.single for d in domains):
        by_genre: dict[str, str] = {}
        for d in domains:
            by_genre.setdefault(d.include[0], d.name)
        return next((by_genre[g] for g in genres if g in by_genre), None)
    return next((d.name for d in domains if d.matches(genres)), None)


def check_rule(rule: str, *, dataset: str) -> None:
    if rule not in RULES:
        raise CrossbenchError(f"dataset {dataset!r}: genre_rule must be 'first' or 'exclusive', got {rule!r}")


def describe(domains: Sequence[GenreDomain]) -> dict[str, dict[str, list[str]]]:
    """Each domain's genres, for the dataset's meta (and so the run record)."""
    return {d.name: {"include": list(d.include), "exclude": list(d.exclude)} for d in domains}


def split_by_genre(
    *,
    users: np.ndarray,
    items: np.ndarray,
    timestamps: np.ndarray,
    ratings: np.ndarray | None,
    movies: pd.DataFrame,
    domains: Sequence[GenreDomain],
    rule: str,
    sources: Mapping[str, str],
    movies_path: Path | str,
) -> RawData:
    """Interactions and items of the genre domains.

    ``movies`` has columns ``item``, ``title``, ``text`` and ``genres`` (a tuple of genre
    names per movie, in the file's order). Interactions with a movie that matches no domain
    (or is not in ``movies``) are dropped and counted in ``meta["ratings_outside_domains"]``.
    """
    check_genres(domains, (g for gs in movies["genres"] for g in gs), where=movies_path)
    ids = movies["item"].astype(str)
    assigned = {i: assign(gs, domains, rule=rule) for i, gs in zip(ids, movies["genres"])}
    mapping = {i: d for i, d in assigned.items() if d is not None}
    domain = pd.Series(items).astype(str).map(mapping)
    keep = domain.notna().to_numpy()
    raw = frame("", users[keep], items[keep], timestamps[keep], None if ratings is None else ratings[keep])
    raw["domain"] = domain.to_numpy()[keep]
    table = pd.DataFrame(
        {"domain": ids.map(mapping), "item": ids, "title": movies["title"].astype(str), "text": movies["text"].astype(str)}
    ).dropna(subset=["domain"])
    meta = {"genre_rule": rule, "ratings_outside_domains": int((~keep).sum()), "genre_domains": describe(domains)}
    return RawData(raw, table, dict(sources), meta)
