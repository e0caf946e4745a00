"""Tables from records: leaderboards (mean ± std, best in bold, significance), pairwise
tables, their notes, exports (CSV, JSON, plots), the index of published leaderboards, and
dataset statistics.

It builds only from verified records (:mod:`crossbench.records`) and the statistics of
:mod:`crossbench.evaluate`; it never fits nor evaluates a model. The runner, tuning and
the CLI import it.
"""
