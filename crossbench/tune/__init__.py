"""Tuning with Optuna: per-split studies on validation users with the same budget for
every model, search spaces read from the components' typed parameters, study storages
(SQLite, journal files, databases), workers sharing a study, pruning, and study plots.

It imports the experiment values and validation, training and evaluation; the runner
calls it before a tuned split is evaluated on its test users.
"""
