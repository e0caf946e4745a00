"""The built-in protocols, registered through the ``crossbench_protocols`` hook.

``cold-start``: among users active in the target and another domain, a seeded fraction become
test users and a disjoint fraction validation users, with all their target interactions held
out. ``warm``: leave-one-out by time under one global time cut. ``cold-start-rating``: the
cold-start split judged by rating error (MAE, RMSE). ``loo``, ``loo-999``, ``loo-100``:
leave-one-out on overlapping users, under full ranking or the papers' sampled negatives.
"""

from __future__ import annotations

from crossbench import hookimpl
from crossbench.plugin.specs import ProtocolSpec
from crossbench_protocols.loo import LeaveOneOut, Loo100, Loo999
from crossbench_protocols.splits import ColdStart, ColdStartRating, Warm

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
        ProtocolSpec(
            "cold-start-rating", ColdStartRating,
            "rating task: the cold-start split, MAE and RMSE of the cold users' held-out ratings (EMCDR, PTUPCDR)",
        ),
        ProtocolSpec("loo", LeaveOneOut, "leave-one-out per overlapping user (last target item), full ranking"),
        ProtocolSpec("loo-999", Loo999, "leave-one-out per overlapping user, sampled: 999 uniform negatives (DisenCDR, CDRIB, C2DSR)"),
        ProtocolSpec("loo-100", Loo100, "leave-one-out per overlapping user, sampled: 100 uniform negatives (Tri-CDR)"),
    ]


__all__ = ["ColdStart", "ColdStartRating", "LeaveOneOut", "Loo100", "Loo999", "Warm"]
