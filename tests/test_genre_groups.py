"""Genre-group domain specs: parsing, errors, and first / exclusive assignment checked by hand."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from crossbench.data.io import DataFileError
from crossbench.errors import CrossbenchError
from crossbench_datasets import movielens
from crossbench_datasets.genres import GenreDomain, assign, parse_domain, parse_domains

# --------------------------------------------------------------------------- parsing


def test_plain_genre_is_a_one_genre_domain_named_after_it() -> None:
    d = parse_domain("Children's", dataset="t")
    assert d == GenreDomain(name="Children's", include=("Children's",), exclude=())
    assert d.single and d.spec == "Children's"


def test_group_with_exclusions_keeps_hyphens_apostrophes_and_order() -> None:
    d = parse_domain(" thriller = Thriller| Film-Noir |Children's ! Comedy|Sci-Fi ", dataset="t")
    assert d == GenreDomain(name="thriller", include=("Thriller", "Film-Noir", "Children's"), exclude=("Comedy", "Sci-Fi"))
    assert not d.single
    assert d.spec == "thriller=Thriller|Film-Noir|Children's!Comedy|Sci-Fi"
    assert parse_domain(d.spec, dataset="t") == d
    # a named one-genre domain is "single" too (the rule that predates groups applies to it)
    assert parse_domain("funny=Comedy", dataset="t").single


def test_domain_lists_from_a_sequence_or_a_comma_separated_string() -> None:
    listed = parse_domains(["Comedy", "dark=Crime|Thriller!Comedy"], dataset="t")
    joined = parse_domains("Comedy, dark=Crime|Thriller!Comedy", dataset="t")
    assert listed == joined
    assert [d.name for d in listed] == ["Comedy", "dark"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("=Comedy|Drama", r"has an empty name; write NAME=Comedy\|Drama$"),
        ("x=", r"has an empty include list; list genres separated by '\|', e\.g\. 'thriller=Thriller\|Crime"),
        ("x=!Comedy", r"has an empty include list"),
        ("x=Drama!", r"has an empty exclude list"),
        ("x=Drama||War", r"has an empty genre in its include list .*remove the extra '\|'$"),
        ("x=Drama|War|", r"has an empty genre in its include list"),
        ("x=Drama!Comedy!War", r"has more than one '!'; list every excluded genre after one '!'"),
        ("x=Drama=War", r"has more than one '='"),
        ("Comedy|Drama", r"combines genres but has no name; write NAME=Comedy\|Drama, e\.g\."),
        ("Drama!Comedy", r"combines genres but has no name; write NAME=Drama!Comedy"),
        ("x=Drama|Comedy!Comedy", r"both includes and excludes 'Comedy'; remove it from one side$"),
    ],
)
def test_bad_specs_name_the_spec_and_the_fix(spec: str, message: str) -> None:
    with pytest.raises(CrossbenchError, match=r"^dataset 'movielens': domain spec " + re.escape(repr(spec)) + " " + message):
        movielens(path="unused", domains=("Comedy", spec))


def test_duplicate_domain_names_are_refused() -> None:
    with pytest.raises(CrossbenchError, match=r"domain name\(s\) 'Comedy' used by more than one spec "
                                              r"\('Comedy', 'Comedy=Comedy\|Animation'\); give each domain its own NAME="):
        parse_domains(["Comedy", "Drama", "Comedy=Comedy|Animation"], dataset="movielens")
    with pytest.raises(CrossbenchError, match=r"listed twice"):
        parse_domains(["Drama", "Drama"], dataset="movielens")


# --------------------------------------------------------------------------- assignment by hand

MOVIES = {
    "1": ("Toy Story (1995)", "Animation|Children's|Comedy"),
    "2": ("Heat (1995)", "Action|Crime|Thriller"),
    "3": ("Fargo (1996)", "Comedy|Crime|Drama|Thriller"),
    "4": ("Seven (1995)", "Crime|Drama|Mystery|Thriller"),
    "5": ("Casablanca (1942)", "Drama|Romance|War"),
    "6": ("Star Wars (1977)", "Action|Adventure|Sci-Fi"),
}
FUNNY = "funny=Comedy|Animation"
DARK = "dark=Thriller|Crime|Mystery!Comedy"


def write_ml(root: Path) -> Path:
    """Six movies, each rated 5 by users 1, 2 and 3 (and movie 5 rated 2 by user 4)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "movies.dat").write_text("".join(f"{m}::{t}::{g}\n" for m, (t, g) in MOVIES.items()), encoding="latin-1")
    rows = [f"{u}::{m}::5::{978300000 + 10 * u + int(m)}" for u in (1, 2, 3) for m in MOVIES]
    rows.append("4::5::2::978300999")
    (root / "ratings.dat").write_text("\n".join(rows) + "\n")
    return root


def items_of(data) -> dict[str, list[str]]:
    return {name: sorted(data.domain(name).items["item_id"]) for name in data.domain_names}


def test_first_rule_takes_the_first_listed_domain_a_movie_matches(tmp_path: Path) -> None:
    root = write_ml(tmp_path)
    data = movielens(path=str(root), domains=(FUNNY, DARK, "Drama")).load()
    # 1 funny; 2 dark; 3 funny (also Drama; dark excluded by Comedy); 4 dark (also Drama); 5 Drama; 6 none
    assert items_of(data) == {"funny": ["1", "3"], "dark": ["2", "4"], "Drama": ["5"]}
    assert data.meta["ratings_outside_domains"] == 3  # movie 6, three ratings
    assert data.meta["genre_domains"]["dark"] == {"include": ["Thriller", "Crime", "Mystery"], "exclude": ["Comedy"]}
    read = data.meta["preprocessing"][0]["params"]["sources"]
    assert read["Drama"].endswith("ratings.dat (genre Drama)")
    assert read["dark"].endswith("ratings.dat (genres dark=Thriller|Crime|Mystery!Comedy)")
    # the listing order decides: Drama first takes 3 and 4
    data = movielens(path=str(root), domains=("Drama", DARK, FUNNY)).load()
    assert items_of(data) == {"Drama": ["3", "4", "5"], "dark": ["2"], "funny": ["1"]}


def test_exclusive_rule_keeps_movies_matching_exactly_one_domain(tmp_path: Path) -> None:
    root = write_ml(tmp_path)
    data = movielens(path=str(root), domains=(FUNNY, DARK, "Drama"), genre_rule="exclusive").load()
    # 3 matches funny and Drama, 4 matches dark and Drama: both dropped
    assert items_of(data) == {"funny": ["1"], "dark": ["2"], "Drama": ["5"]}
    assert data.meta["ratings_outside_domains"] == 9  # movies 3, 4 and 6


def test_exclusion_removes_movies_from_a_group(tmp_path: Path) -> None:
    root = write_ml(tmp_path)
    with_comedy = movielens(path=str(root), domains=("crime=Crime|Thriller", "Drama")).load()
    without = movielens(path=str(root), domains=("crime=Crime|Thriller!Comedy|Mystery", "Drama")).load()
    assert items_of(with_comedy) == {"crime": ["2", "3", "4"], "Drama": ["5"]}
    assert items_of(without) == {"crime": ["2"], "Drama": ["3", "4", "5"]}


def test_single_genre_domains_keep_the_rule_that_predates_groups(tmp_path: Path) -> None:
    root = write_ml(tmp_path)
    # plain genres: the movie's own first chosen genre decides, whatever the listing order
    data = movielens(path=str(root), domains=("Drama", "Comedy")).load()
    assert items_of(data) == {"Drama": ["4", "5"], "Comedy": ["1", "3"]}
    assert assign(("Comedy", "Crime", "Drama"), parse_domains(["Drama", "Comedy"], dataset="t"), rule="first") == "Comedy"
    # with a group among them, the listing order decides
    groups = parse_domains(["Drama", "c=Comedy|Animation"], dataset="t")
    assert assign(("Comedy", "Crime", "Drama"), groups, rule="first") == "Drama"
    assert assign(("Comedy", "Crime", "Drama"), groups, rule="exclusive") is None
    assert assign(("Western",), groups, rule="first") is None


def test_unknown_genres_in_a_group_or_its_exclusions_are_suggested(tmp_path: Path) -> None:
    root = write_ml(tmp_path)
    with pytest.raises(DataFileError, match=r"movies\.dat: no movie has the genre 'Thriler' in domain spec "
                                            r"'dark=Thriler\|Crime'; did you mean 'Thriller'"):
        movielens(path=str(root), domains=("Drama", "dark=Thriler|Crime")).load()
    with pytest.raises(DataFileError, match=r"no movie has the genre 'Comdy' in domain spec 'dark=Crime!Comdy'; "
                                            r"did you mean 'Comedy'"):
        movielens(path=str(root), domains=("Drama", "dark=Crime!Comdy")).load()
    with pytest.raises(CrossbenchError, match=r"genre_rule must be 'first' or 'exclusive', got 'last'"):
        movielens(path=str(root), domains=("Drama", FUNNY), genre_rule="last").load()
