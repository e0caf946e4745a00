"""After evaluation: ``recommend`` (the evaluator's own ranking as a function and a
command), the feedback models' contract, and the simulation round by round
(recommend, feedback, retrain, record; resumable), with its report.

It imports the runner and every stage below it; only the CLI imports it.
"""
