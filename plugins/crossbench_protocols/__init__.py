"""The built-in protocols, registered through the ``crossbench_protocols`` hook.

``cold-start``: among users active in the target and another domain, a seeded fraction become
test users and a disjoint fraction validation users, with all their target interactions held
out. ``warm``: leave-one-out by time under one global time cut. ``cold-start-rating``: the
cold-start split judged by rating error (MAE, RMSE). ``loo``, ``loo-999``, ``loo-100``:
leave-one-out on overlapping users, under full ranking or the papers' sampled negatives.
``new-items``: a seeded share of the target's items held out with all their interactions; the
ground truth is the test users' interactions with those new items, known by their text only.
"""

from __future__ import annotations

from crossbench import hookimpl
from crossbench.plugin.specs import ProtocolSpec
from crossbench_protocols.loo import LeaveOneOut, Loo100, Loo999
from crossbench_protocols.new_items import NEW_ITEMS_MEANINGS, NewItems
from crossbench_protocols.splits import ColdStart, ColdStartRating, Warm

#: Meanings of the cold-start protocols' hyperparameters.
_COLD_MEANINGS = {
    "test_fraction": "share of the users active in the target and another domain that become cold test users",
    "valid_fraction": "share of those users, disjoint from the test users, that become cold validation users",
}
_LOO_MEANINGS = {
    "users": "who may get a test item: 'overlap' (active in the target and another domain) or 'all' target users",
    "min_items": "fewest distinct target items a user needs (test, validation and at least one training item)",
}

#: the cold-start fractions ``crossbench data stats`` shows side by side
COLD_FRACTIONS = (0.2, 0.5, 0.8)


@hookimpl
def crossbench_protocols() -> list[ProtocolSpec]:
    return [
        ProtocolSpec(
            "cold-start", ColdStart, "users cold in the target: all their target interactions held out (CDR standard)",
            meanings=_COLD_MEANINGS, presets=tuple((f"cold-start {f:.0%}", {"test_fraction": f}) for f in COLD_FRACTIONS),
        ),
        ProtocolSpec("warm", Warm, "leave-one-out by time under one global time cut (no domain's future in training)", meanings={
            "cut_quantile": "the time cut is the target timestamp below which this share of target interactions lies",
            "cut_time": "an explicit time cut (timestamp); None: use cut_quantile",
        }),
        ProtocolSpec(
            "cold-start-rating", ColdStartRating,
            "rating task: the cold-start split, MAE and RMSE of the cold users' held-out ratings (EMCDR, PTUPCDR)",
            meanings=_COLD_MEANINGS,
        ),
        ProtocolSpec("loo", LeaveOneOut, "leave-one-out per overlapping user (last target item), full ranking", meanings={
            **_LOO_MEANINGS, "n_negatives": "uniform negatives each test item is ranked against; 0: the full catalogue",
        }),
        ProtocolSpec("loo-999", Loo999, "leave-one-out per overlapping user, sampled: 999 uniform negatives (DisenCDR, CDRIB, C2DSR)", meanings=_LOO_MEANINGS),
        ProtocolSpec("loo-100", Loo100, "leave-one-out per overlapping user, sampled: 100 uniform negatives (Tri-CDR)", meanings=_LOO_MEANINGS),
        ProtocolSpec("new-items", NewItems, "new items: a share of the target's items held out with all their interactions, "
                     "known by their text only; ground truth: test users' interactions with them", meanings=NEW_ITEMS_MEANINGS),
    ]


__all__ = ["ColdStart", "ColdStartRating", "LeaveOneOut", "Loo100", "Loo999", "NewItems", "Warm"]
