"""The built-in protocols, registered through the ``crossbench_protocols`` hook.

``cold-start``: among users active in the target and another domain, a seeded fraction become
test users and a disjoint fraction validation users, with all their target interactions held
out. ``warm``: leave-one-out by time under one global time cut.
"""

from __future__ import annotations

from crossbench import hookimpl
from crossbench.plugin.specs import ProtocolSpec
from crossbench_protocols.splits import ColdStart, Warm

#: the cold-start fractions ``crossbench data stats`` shows side by side
COLD_FRACTIONS = (0.2, 0.5, 0.8)


@hookimpl
def crossbench_protocols() -> list[ProtocolSpec]:
    return [
        ProtocolSpec(
            "cold-start", ColdStart, "users cold in the target: all their target interactions held out (CDR standard)",
            presets=tuple((f"cold-start {f:.0%}", {"test_fraction": f}) for f in COLD_FRACTIONS),
        ),
        ProtocolSpec("warm", Warm, "leave-one-out by time under one global time cut (no domain's future in training)"),
    ]


__all__ = ["ColdStart", "Warm"]
