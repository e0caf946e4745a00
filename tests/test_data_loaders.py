"""Every loader on small files written here in the real formats, good and broken."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from crossbench.data.io import DataFileError
from crossbench.errors import CrossbenchError
from crossbench.plugin.manager import get_plugin_manager
from crossbench.plugin.registry import Registry


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry(get_plugin_manager())


def load(registry: Registry, name: str, **params: object):
    return registry.get("datasets", name).factory(**params).load()


def raw_ids(data, domain: str) -> set[tuple[str, str]]:
    d = data.domain(domain)
    users = data.user_ids[d.interactions["user"].to_numpy()]
    items = d.items["item_id"].to_numpy()[d.interactions["item"].to_numpy()]
    return set(zip(map(str, users), map(str, items)))


# --------------------------------------------------------------------------- RecBole atomic


def write_recbole(root: Path, domain: str, rows: list[str], items: list[str] | None = None) -> None:
    (root / domain).mkdir(parents=True, exist_ok=True)
    header = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    (root / domain / f"{domain}.inter").write_text(header + "".join(r + "\n" for r in rows))
    if items is not None:
        (root / domain / f"{domain}.item").write_text(
            "item_id:token\ttitle:token_seq\tcategories:token_seq\n" + "".join(r + "\n" for r in items)
        )


def test_recbole_reads_atomic_files_with_shared_users(tmp_path: Path, registry: Registry) -> None:
    write_recbole(tmp_path, "books", ["u1\tb1\t5\t100", "u1\tb2\t2\t110", "u2\tb1\t4\t120", "u3\tb3\t5.0\t130"],
                  ["b1\tThe Dune Saga\tSci-Fi Novels", "b2\tCook Well\tFood", "b3\tA War\tHistory", "b9\tUnrated\tNone"])
    write_recbole(tmp_path, "movies", ["u1\tm1\t4\t200", "u2\tm2\t5\t210", "u4\tm1\t3\t220"])
    data = load(registry, "recbole", path=str(tmp_path), domains=["books", "movies"], min_rating=4)
    assert list(data.user_ids) == ["u1", "u2", "u3"]  # u4 only rated 3
    assert raw_ids(data, "books") == {("u1", "b1"), ("u2", "b1"), ("u3", "b3")}
    assert raw_ids(data, "movies") == {("u1", "m1"), ("u2", "m2")}
    books = data.domain("books").items
    assert list(books["item_id"]) == ["b1", "b3"]  # only items with interactions after the threshold
    assert list(books["title"]) == ["The Dune Saga", "A War"]
    assert list(books["text"]) == ["Sci-Fi Novels", "History"]
    steps = {s["step"]: s for s in data.meta["preprocessing"]}
    assert (steps["min_rating"]["rows_before"], steps["min_rating"]["rows_after"]) == (7, 5)
    assert steps["min_overlap"]["params"]["overlap"] == {"books": 2, "movies": 2}
    assert data.meta["default_target"] == "movies"
    json.dumps(data.meta)  # the run record can hold it


def test_recbole_flat_layout_and_custom_fields(tmp_path: Path, registry: Registry) -> None:
    (tmp_path / "a.inter").write_text("uid:token\tiid:token\nx\t1\ny\t2\n")
    (tmp_path / "b.inter").write_text("uid:token\tiid:token\nx\t7\n")
    data = load(registry, "recbole", path=str(tmp_path), domains="a,b", user_field="uid", item_field="iid")
    assert raw_ids(data, "a") == {("x", "1"), ("y", "2")}
    assert (data.domain("a").interactions["timestamp"] == 0).all()


def test_recbole_missing_column_names_file_and_columns(tmp_path: Path, registry: Registry) -> None:
    (tmp_path / "a.inter").write_text("user:token\titem_id:token\nx\t1\n")
    (tmp_path / "b.inter").write_text("user_id:token\titem_id:token\nx\t7\n")
    with pytest.raises(DataFileError) as err:
        load(registry, "recbole", path=str(tmp_path), domains=["a", "b"])
    msg = str(err.value)
    assert str(tmp_path / "a.inter") in msg and "'user_id'" in msg and "columns present: user, item_id" in msg


def test_recbole_malformed_row_names_line(tmp_path: Path, registry: Registry) -> None:
    write_recbole(tmp_path, "a", ["u1\ti1\t5\t1", "u2\ti2\t5\t2\textra", "u3\ti3\t4\t3"])
    write_recbole(tmp_path, "b", ["u1\tj1\t5\t1"])
    with pytest.raises(DataFileError, match=r"a\.inter: line 3 is malformed"):
        load(registry, "recbole", path=str(tmp_path), domains=["a", "b"])


def test_recbole_bad_number_names_line_and_column(tmp_path: Path, registry: Registry) -> None:
    write_recbole(tmp_path, "a", ["u1\ti1\t5\t1", "u2\ti2\tfive\t2"])
    write_recbole(tmp_path, "b", ["u1\tj1\t5\t1"])
    with pytest.raises(DataFileError, match=r"a\.inter: line 3: column 'rating' holds 'five'"):
        load(registry, "recbole", path=str(tmp_path), domains=["a", "b"])


def test_recbole_wrong_encoding_names_line_offset_and_option(tmp_path: Path, registry: Registry) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "a.inter").write_bytes("user_id:token\titem_id:token\nu1\ti1\nu2\tcaf\xe9\n".encode("latin-1"))
    write_recbole(tmp_path, "b", ["u1\tj1\t5\t1"])
    with pytest.raises(DataFileError) as err:
        load(registry, "recbole", path=str(tmp_path), domains=["a", "b"])
    msg = str(err.value)
    assert "a.inter: line 3 (byte offset 40) is not valid utf-8" in msg and "encoding=latin-1" in msg
    data = load(registry, "recbole", path=str(tmp_path), domains=["a", "b"], encoding="latin-1")
    assert "café" in set(data.domain("a").items["item_id"])


def test_recbole_empty_domain_and_missing_domain(tmp_path: Path, registry: Registry) -> None:
    write_recbole(tmp_path, "a", ["u1\ti1\t5\t1"])
    write_recbole(tmp_path, "b", [])
    with pytest.raises(DataFileError, match=r"b\.inter: domain 'b' has a header but no interactions"):
        load(registry, "recbole", path=str(tmp_path), domains=["a", "b"])
    with pytest.raises(DataFileError, match=r"no atomic file for domain 'c'"):
        load(registry, "recbole", path=str(tmp_path), domains=["a", "c"])


def test_no_overlapping_users_is_an_error_naming_the_domains(tmp_path: Path, registry: Registry) -> None:
    write_recbole(tmp_path, "a", ["u1\ti1\t5\t1", "u2\ti2\t5\t1"])
    write_recbole(tmp_path, "b", ["v1\tj1\t5\t1"])
    with pytest.raises(CrossbenchError, match=r"domain 'a' shares 0 users with 'b' \(min_overlap=1\)"):
        load(registry, "recbole", path=str(tmp_path), domains=["a", "b"])


def test_threshold_that_empties_a_domain_names_it(tmp_path: Path, registry: Registry) -> None:
    write_recbole(tmp_path, "a", ["u1\ti1\t5\t1"])
    write_recbole(tmp_path, "b", ["u1\tj1\t2\t1"])
    with pytest.raises(CrossbenchError, match=r"domain 'b' has no interactions left after min_rating=4.0 \(it had 1"):
        load(registry, "recbole", path=str(tmp_path), domains=["a", "b"], min_rating=4)


# --------------------------------------------------------------------------- MovieLens


def write_ml1m(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    movies = ["1::Toy Story (1995)::Animation|Children's|Comedy", "2::Heat (1995)::Action|Crime|Thriller",
              "3::Amélie (2001)::Comedy|Romance", "4::Casino (1995)::Drama|Thriller", "5::Babe (1995)::Children's|Comedy|Drama"]
    (root / "movies.dat").write_bytes(("\n".join(movies) + "\n").encode("latin-1"))
    ratings = ["1::1::5::978300760", "1::4::3::978302109", "2::3::4::978301968", "2::5::5::978300275",
               "3::2::4::978824291", "3::4::5::978300000", "1::3::2::978300100"]
    (root / "ratings.dat").write_text("\n".join(ratings) + "\n")


def test_movielens_dat_genre_domains(tmp_path: Path, registry: Registry) -> None:
    write_ml1m(tmp_path)
    data = load(registry, "movielens", path=str(tmp_path), domains=("Comedy", "Drama"))
    # movie 5 is Children's|Comedy|Drama -> Comedy (first chosen genre); movie 2 has neither
    assert raw_ids(data, "Comedy") == {("1", "1"), ("2", "3"), ("2", "5"), ("1", "3")}
    assert raw_ids(data, "Drama") == {("1", "4"), ("3", "4")}
    assert data.meta["ratings_outside_domains"] == 1
    comedy = data.domain("Comedy").items.set_index("item_id")
    assert comedy.loc["3", "title"] == "Amélie (2001)"  # latin-1 decoded
    assert comedy.loc["1", "text"] == "Genres: Animation, Children's, Comedy"
    ratings = data.domain("Drama").interactions.sort_values("timestamp")["rating"].tolist()
    assert ratings == [5.0, 3.0]
    exclusive = load(registry, "movielens", path=str(tmp_path), domains=("Comedy", "Drama"), genre_rule="exclusive")
    assert raw_ids(exclusive, "Comedy") == {("1", "1"), ("2", "3"), ("1", "3")}


def test_movielens_dat_malformed_rows(tmp_path: Path, registry: Registry) -> None:
    write_ml1m(tmp_path)
    with open(tmp_path / "ratings.dat", "a") as fh:
        fh.write("4::1::5\n")
    with pytest.raises(DataFileError, match=r"ratings\.dat: line 8: column 'c6' is empty or the row has too few fields"):
        load(registry, "movielens", path=str(tmp_path), domains=("Comedy", "Drama"))
    write_ml1m(tmp_path)
    with open(tmp_path / "ratings.dat", "a") as fh:
        fh.write("4:1:5:978300760\n")
    with pytest.raises(DataFileError, match=r"ratings\.dat: line 8: expected UserID::MovieID::Rating::Timestamp"):
        load(registry, "movielens", path=str(tmp_path), domains=("Comedy", "Drama"))


def test_movielens_csv_release(tmp_path: Path, registry: Registry) -> None:
    (tmp_path / "movies.csv").write_text(
        'movieId,title,genres\n1,"Toy Story (1995)",Adventure|Comedy\n2,"Heat, The (1995)",Drama\n3,Up (2009),Drama|Comedy\n'
    )
    (tmp_path / "ratings.csv").write_text(
        "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,2,4.5,964981247\n2,2,3.5,964982224\n2,3,5.0,964983815\n"
    )
    data = load(registry, "movielens", path=str(tmp_path), domains=["Comedy", "Drama"], min_rating=4.0)
    assert raw_ids(data, "Comedy") == {("1", "1")}
    assert raw_ids(data, "Drama") == {("1", "2"), ("2", "3")}
    assert data.domain("Drama").items.set_index("item_id").loc["2", "title"] == "Heat, The (1995)"


def test_movielens_csv_missing_column_and_unknown_genre(tmp_path: Path, registry: Registry) -> None:
    (tmp_path / "movies.csv").write_text("movieId,title,genres\n1,A,Comedy\n2,B,Drama\n")
    (tmp_path / "ratings.csv").write_text("userId,movieId,score,timestamp\n1,1,4,1\n")
    with pytest.raises(DataFileError, match=r"ratings\.csv: missing column\(s\) 'rating'"):
        load(registry, "movielens", path=str(tmp_path), domains=["Comedy", "Drama"])
    (tmp_path / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,1,4,1\n1,2,4,1\n")
    with pytest.raises(DataFileError, match=r"no movie has the genre 'Dramas'; did you mean 'Drama'"):
        load(registry, "movielens", path=str(tmp_path), domains=["Comedy", "Dramas"])


def test_movielens_missing_files_named(tmp_path: Path, registry: Registry) -> None:
    (tmp_path / "rating.dat").write_text("1::1::5::1\n")
    with pytest.raises(DataFileError, match=r"none of ratings\.dat, ratings\.csv found .*did you mean rating\.dat"):
        load(registry, "movielens", path=str(tmp_path))


# --------------------------------------------------------------------------- Amazon 2018


def write_amazon2018(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "Books.csv").write_text("0001,A1,5.0,1400000000\n0002,A1,3.0,1400000100\n0001,A2,4.0,1400000200\n")
    reviews = [
        {"overall": 5.0, "verified": True, "reviewTime": "09 13, 2009", "reviewerID": "A1", "asin": "M1",
         "reviewerName": "x", "reviewText": "great", "summary": "ok", "unixReviewTime": 1252800000},
        {"overall": 4.0, "reviewerID": "A3", "asin": "M2", "unixReviewTime": 1252800100, "style": {"Format:": " DVD"}},
        {"overall": 2.0, "reviewerID": "A2", "asin": "M1", "unixReviewTime": 1252800200},
    ]
    with gzip.open(root / "Movies_and_TV_5.json.gz", "wt") as fh:
        fh.write("".join(json.dumps(r) + "\n" for r in reviews))
    meta = [
        {"asin": "M1", "title": "Alien", "description": ["In space", "no one hears"], "category": ["Movies"]},
        {"asin": "M2", "title": "Heat", "description": []},
        {"asin": "M9", "title": "Never rated"},
    ]
    (root / "meta_Movies_and_TV.json").write_text("".join(json.dumps(m) + "\n" for m in meta))


def test_amazon2018_ratings_csv_and_5core_json_with_meta(tmp_path: Path, registry: Registry) -> None:
    write_amazon2018(tmp_path)
    data = load(registry, "amazon2018", path=str(tmp_path), domains=("Books", "Movies_and_TV"))
    assert raw_ids(data, "Books") == {("A1", "0001"), ("A1", "0002"), ("A2", "0001")}
    assert raw_ids(data, "Movies_and_TV") == {("A1", "M1"), ("A3", "M2"), ("A2", "M1")}
    items = data.domain("Movies_and_TV").items.set_index("item_id")
    assert items.loc["M1", "title"] == "Alien" and items.loc["M1", "text"] == "In space no one hears"
    assert list(items.index) == ["M1", "M2"]
    assert data.domain("Books").items["item_id"].tolist() == ["0001", "0002"]  # leading zeros kept
    assert data.overlap("Books", "Movies_and_TV").tolist() == [0, 1]


def test_amazon2018_bad_json_line_named(tmp_path: Path, registry: Registry) -> None:
    write_amazon2018(tmp_path)
    (tmp_path / "Movies_and_TV_5.json.gz").unlink()
    (tmp_path / "Movies_and_TV_5.json").write_text(
        '{"reviewerID": "A1", "asin": "M1", "overall": 5.0, "unixReviewTime": 1}\n{"reviewerID": "A2", "asin": \n'
    )
    with pytest.raises(DataFileError, match=r"Movies_and_TV_5\.json: line 2, column \d+: not valid JSON"):
        load(registry, "amazon2018", path=str(tmp_path), domains=("Books", "Movies_and_TV"))
    (tmp_path / "Movies_and_TV_5.json").write_text(
        '{"reviewerID": "A1", "asin": "M1", "overall": 5.0, "unixReviewTime": 1}\n'
        '{"reviewerID": "A2", "asin": "M2", "overall": 3}\n'
    )
    with pytest.raises(DataFileError, match=r"Movies_and_TV_5\.json: line 2: field 'unixReviewTime' is missing"):
        load(registry, "amazon2018", path=str(tmp_path), domains=("Books", "Movies_and_TV"))


def test_amazon2018_csv_short_row_and_bad_encoding(tmp_path: Path, registry: Registry) -> None:
    write_amazon2018(tmp_path)
    (tmp_path / "Books.csv").write_text("0001,A1,5.0,1400000000\n0002,A1\n")
    with pytest.raises(DataFileError, match=r"Books\.csv: line 2: column 'rating' is empty or the row has too few fields"):
        load(registry, "amazon2018", path=str(tmp_path))
    (tmp_path / "Books.csv").write_text("0001,A1,5.0,1400000000\n0002,A1,4.0,1400000001\n0003,A2,five,1400000002\n")
    with pytest.raises(DataFileError, match=r"Books\.csv: line 3: column 'rating \(3rd field\)' holds 'five', which is not"):
        load(registry, "amazon2018", path=str(tmp_path))
    (tmp_path / "Books.csv").write_bytes(b"0001,A1,5.0,1400000000\n0002,A\xff1,4.0,1400000001\n")
    with pytest.raises(DataFileError, match=r"Books\.csv: line 2 \(byte offset 29\) is not valid utf-8"):
        load(registry, "amazon2018", path=str(tmp_path))


# --------------------------------------------------------------------------- Amazon 2023


def test_amazon2023_jsonl(tmp_path: Path, registry: Registry) -> None:
    for cat, rows in {
        "Books": [("U1", "B1", 5.0, 1600000000000), ("U2", "B2", 4.0, 1600000001000)],
        "Movies_and_TV": [("U1", "V1", 3.0, 1600000002500), ("U2", "V1", 5.0, 1600000003000)],
    }.items():
        lines = [json.dumps({"rating": r, "title": "t", "text": "x", "images": [], "asin": f"{i}-child", "parent_asin": i,
                             "user_id": u, "timestamp": ts, "helpful_vote": 0, "verified_purchase": True})
                 for u, i, r, ts in rows]
        (tmp_path / f"{cat}.jsonl").write_text("\n".join(lines) + "\n")
    (tmp_path / "meta_Movies_and_TV.jsonl").write_text(json.dumps(
        {"main_category": "Movies", "title": "Vertigo", "features": ["Hitchcock"], "description": ["A detective"],
         "parent_asin": "V1"}) + "\n")
    data = load(registry, "amazon2023", path=str(tmp_path))
    assert raw_ids(data, "Books") == {("U1", "B1"), ("U2", "B2")}
    movies = data.domain("Movies_and_TV")
    assert movies.interactions["timestamp"].tolist() == [1600000002, 1600000003]  # ms -> s
    assert movies.items.iloc[0][["title", "text"]].tolist() == ["Vertigo", "A detective Hitchcock"]
    child = load(registry, "amazon2023", path=str(tmp_path), item_field="asin")
    assert raw_ids(child, "Books") == {("U1", "B1-child"), ("U2", "B2-child")}


# --------------------------------------------------------------------------- Douban


def write_douban(root: Path, domain: str, rows: list[tuple[str, str, str, str]]) -> None:
    header = f'"user_id"\t"{domain}_id"\t"rating"\t"labels"\t"comment"\t"time"\t"ID"\n'
    body = "".join(f'"{u}"\t"{i}"\t"{r}"\t"tag"\t"nice, really"\t"{t}"\t"{k}"\n' for k, (u, i, r, t) in enumerate(rows))
    (root / f"{domain}reviews_cleaned.txt").write_text(header + body)


def test_douban_book_movie_music(tmp_path: Path, registry: Registry) -> None:
    write_douban(tmp_path, "book", [("alice", "b1", "5", "2016-01-23"), ("bob", "b2", "-1", "2016-01-24")])
    write_douban(tmp_path, "movie", [("alice", "m1", "4", "2015-05-01 10:00:00"), ("bob", "m1", "3", "2015-05-02")])
    write_douban(tmp_path, "music", [("bob", "s1", "5", "1400000000")])
    data = load(registry, "douban", path=str(tmp_path), domains="book,music,movie", min_rating=1)
    assert raw_ids(data, "book") == {("alice", "b1")}
    assert raw_ids(data, "movie") == {("alice", "m1"), ("bob", "m1")}
    assert data.domain("book").interactions["timestamp"].tolist() == [1453507200]  # 2016-01-23 UTC
    assert sorted(data.domain("movie").interactions["timestamp"]) == [1430474400, 1430524800]
    assert data.meta["default_target"] == "movie"
    with pytest.raises(CrossbenchError, match=r"unknown Douban domain 'movies'; did you mean 'movie'"):
        load(registry, "douban", path=str(tmp_path), domains=("book", "movies"))


def test_douban_bad_time_and_missing_column(tmp_path: Path, registry: Registry) -> None:
    write_douban(tmp_path, "book", [("alice", "b1", "5", "2016-01-23"), ("bob", "b2", "4", "yesterday")])
    write_douban(tmp_path, "movie", [("alice", "m1", "4", "2015-05-01")])
    with pytest.raises(DataFileError, match=r"bookreviews_cleaned\.txt: line 3: column 'time' holds 'yesterday'"):
        load(registry, "douban", path=str(tmp_path))
    (tmp_path / "moviereviews_cleaned.txt").write_text("user_id\tfilm_id\trating\ttime\nalice\tm1\t4\t2015-05-01\n")
    write_douban(tmp_path, "book", [("alice", "b1", "5", "2016-01-23")])
    with pytest.raises(DataFileError, match=r"moviereviews_cleaned\.txt: missing column\(s\) 'movie_id'"):
        load(registry, "douban", path=str(tmp_path))


# --------------------------------------------------------------------------- tabular (CSV / Parquet)


def test_tabular_csv_with_column_mapping_and_items(tmp_path: Path, registry: Registry) -> None:
    (tmp_path / "log.csv").write_text(
        "who,what,shop,when,stars\nu1,p1,food,2021-01-01,5\nu1,p9,tools,2021-01-02,4\nu2,p1,food,2021-01-03,2\n"
        "u2,p8,tools,1609718400,5\nu3,p7,garden,1609718400,5\n"
    )
    (tmp_path / "items.csv").write_text("shop,sku,name,blurb,brand\nfood,p1,Apple,red fruit,Acme\ntools,p9,Saw,cuts wood,Bosch\n")
    data = load(registry, "tabular", path=str(tmp_path / "log.csv"), domains=["food", "tools"], user_col="who",
                item_col="what", domain_col="shop", time_col="when", rating_col="stars", items_path=str(tmp_path / "items.csv"),
                item_id_col="sku", item_domain_col="shop", title_col="name", text_cols="blurb,brand")
    assert raw_ids(data, "food") == {("u1", "p1"), ("u2", "p1")}
    assert raw_ids(data, "tools") == {("u1", "p9"), ("u2", "p8")}
    tools = data.domain("tools").items.set_index("item_id")
    assert tools.loc["p9", ["title", "text"]].tolist() == ["Saw", "cuts wood Bosch"]
    assert tools.loc["p8", "title"] == ""
    assert sorted(data.domain("tools").interactions["timestamp"]) == [1609545600, 1609718400]


def test_tabular_errors_name_file_column_line(tmp_path: Path, registry: Registry) -> None:
    path = tmp_path / "log.csv"
    path.write_text("user,item,domain,timestamp\nu1,p1,food,1\nu1,p2,tools,2\n")
    with pytest.raises(DataFileError, match=r"log\.csv: domain 'toolz' has no rows in column 'domain'; did you mean 'tools'"):
        load(registry, "tabular", path=str(path), domains=["food", "toolz"])
    with pytest.raises(DataFileError, match=r"log\.csv: missing column\(s\) 'stars'"):
        load(registry, "tabular", path=str(path), rating_col="stars")
    path.write_text("user,item,domain,timestamp\nu1,p1,food,1\nu1,,tools,2\n")
    with pytest.raises(DataFileError, match=r"log\.csv: line 3: column 'item' is empty"):
        load(registry, "tabular", path=str(path))


def test_tabular_parquet_needs_pyarrow_or_reads(tmp_path: Path, registry: Registry) -> None:
    import pandas as pd

    frame = pd.DataFrame({"user": ["a", "a", "b"], "item": ["x", "y", "x"], "domain": ["d1", "d2", "d1"], "timestamp": [1, 2, 3]})
    path = tmp_path / "log.parquet"
    try:
        frame.to_parquet(path)
    except ImportError:
        path.write_bytes(b"PAR1 not really")
        with pytest.raises(DataFileError, match=r"log\.parquet: reading Parquet needs pyarrow"):
            load(registry, "tabular", path=str(path))
        return
    data = load(registry, "tabular", path=str(path))
    assert raw_ids(data, "d1") == {("a", "x"), ("b", "x")}


def test_loaders_write_nothing(tmp_path: Path, registry: Registry) -> None:
    write_recbole(tmp_path, "a", ["u1\ti1\t5\t1", "u2\ti2\tbad\t2"])
    write_recbole(tmp_path, "b", ["u1\tj1\t5\t1"])
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(DataFileError):
        load(registry, "recbole", path=str(tmp_path), domains=["a", "b"])
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


# --------------------------------------------------------------------------- every loader: empty domain, no overlap, encoding


def _empty_cases(root: Path) -> list[tuple[str, dict[str, object], str]]:
    (root / "amz18").mkdir()
    (root / "amz18" / "Books.csv").write_text("0001,A1,5.0,1\n")
    (root / "amz18" / "Movies_and_TV.csv").write_text("")
    (root / "amz23").mkdir()
    (root / "amz23" / "Books.jsonl").write_text('{"user_id": "U1", "parent_asin": "B1", "rating": 5, "timestamp": 1000}\n')
    (root / "amz23" / "Movies_and_TV.jsonl").write_text("\n")
    (root / "db").mkdir()
    write_douban(root / "db", "book", [("alice", "b1", "5", "2016-01-23")])
    write_douban(root / "db", "movie", [])
    (root / "ml").mkdir()
    (root / "ml" / "movies.dat").write_text("1::A (1990)::Comedy\n2::B (1991)::Drama\n")
    (root / "ml" / "ratings.dat").write_text("")
    return [
        ("amazon2018", {"path": str(root / "amz18")}, r"Movies_and_TV\.csv: domain 'Movies_and_TV' has no ratings"),
        ("amazon2023", {"path": str(root / "amz23")}, r"Movies_and_TV\.jsonl is empty"),
        ("douban", {"path": str(root / "db")}, r"moviereviews_cleaned\.txt: domain 'movie' has a header but no ratings"),
        ("movielens", {"path": str(root / "ml")}, r"ratings\.dat is empty"),
    ]


def test_every_loader_names_an_empty_domain_file(tmp_path: Path, registry: Registry) -> None:
    for name, params, pattern in _empty_cases(tmp_path):
        with pytest.raises(DataFileError, match=pattern):
            load(registry, name, **params)


def test_no_overlap_in_douban_and_amazon(tmp_path: Path, registry: Registry) -> None:
    write_douban(tmp_path, "book", [("alice", "b1", "5", "2016-01-23")])
    write_douban(tmp_path, "movie", [("bob", "m1", "5", "2016-01-23")])
    with pytest.raises(CrossbenchError, match=r"domain 'book' shares 0 users with 'movie'"):
        load(registry, "douban", path=str(tmp_path))
    (tmp_path / "Books.csv").write_text("0001,A1,5.0,1\n")
    (tmp_path / "Movies_and_TV.csv").write_text("0009,A2,5.0,1\n")
    with pytest.raises(CrossbenchError, match=r"domain 'Books' shares 0 users with 'Movies_and_TV'"):
        load(registry, "amazon2018", path=str(tmp_path))


def test_jsonl_wrong_encoding_and_non_object_line(tmp_path: Path, registry: Registry) -> None:
    good = '{"user_id": "U1", "parent_asin": "B1", "rating": 5, "timestamp": 1000}\n'
    (tmp_path / "Books.jsonl").write_text(good)
    (tmp_path / "Movies_and_TV.jsonl").write_bytes(good.encode() + b'{"user_id": "\xe9", "parent_asin": "M1"}\n')
    with pytest.raises(DataFileError, match=r"Movies_and_TV\.jsonl: line 2 \(byte offset 84\) is not valid utf-8.*=latin-1"):
        load(registry, "amazon2023", path=str(tmp_path))
    (tmp_path / "Movies_and_TV.jsonl").write_text(good + "[1, 2]\n")
    with pytest.raises(DataFileError, match=r"Movies_and_TV\.jsonl: line 2: expected a JSON object, got list"):
        load(registry, "amazon2023", path=str(tmp_path))
