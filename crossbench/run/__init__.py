"""The runner: one experiment, split by split and model by model: load the data, split and
audit it, fit (or tune, then fit), evaluate on the test users, write one record per run,
then the tables.

It orchestrates every stage below it (data, plugin, evaluate, train, records, report,
experiment, tune); only the feedback loop and the CLI import it.
"""
