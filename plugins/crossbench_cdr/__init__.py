"""Cross-domain recommendation models trained as their papers train them.

Whole models (:class:`crossbench.plugin.interfaces.Recommender`) built on the staged training base
(:mod:`crossbench.train.stages`): each is named after its paper, trains with the paper's procedure,
loss and published defaults, and lists in its docstring every place it differs. The specs are
in :mod:`crossbench_cdr.specs`; registering the plugin imports no torch.
"""

from __future__ import annotations

from crossbench import hookimpl
from crossbench.plugin.specs import ComponentSpec
from crossbench_cdr import specs


@hookimpl
def crossbench_recommenders() -> list[ComponentSpec]:
    return list(specs.RECOMMENDERS)
