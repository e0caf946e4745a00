"""Run records and the results folder: what a finished run leaves on disk.

Owns the record schema and its verification (every mean recomputed from its
sha256-checked per-user file), writing and loading records, the environment block every
record carries, and the results folder (manifest, lock, finished runs). It imports the
stages below it (plugin, data, evaluate) and the base modules; tables, the runner, tuning,
the feedback loop and the CLI read records through it.
"""
