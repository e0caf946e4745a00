"""Loaders of public cross-domain data formats (Amazon, Douban, MovieLens, RecBole atomic, CSV/Parquet)."""
