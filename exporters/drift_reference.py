"""The drift reference a version is published with (cinesync/drift.py): what the served cascade
answers to a seeded sample of validation requests, computed as offline evaluation computes it (the
same candidates, member scores and fusion the Triton ensemble serves)."""

from __future__ import annotations

import numpy as np

from cinesync.drift import DriftReference
from recsys.candidates import PAD
from recsys.cascade import candidate_lists
from recsys.features import recent
from recsys.run import TrainedRun

REFERENCE_USERS = 1000
ANSWER_LENGTH = 10  # the default k of a Recommend call


def drift_reference(run: TrainedRun, *, users: int = REFERENCE_USERS, k: int = ANSWER_LENGTH) -> DriftReference:
    """Histograms of the fusion's scores of the top ``k`` answers to ``users`` validation requests,
    log(1 + training count) of the answered items, and the lengths of those users' published
    histories as the models read them."""
    split = run.protocol.validation.sampled(users, seed=run.spec.seed + 7)
    retrievers = run.spec.retrieving(run.members)
    lists = candidate_lists(run.members, retrievers, run.tables, split, depth=run.spec.depth)
    scores = np.where(lists.mask, run.fusion.score(lists), -np.inf)
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    chosen = np.take_along_axis(scores, top, axis=1)
    answered = np.take_along_axis(lists.items, top, axis=1)[np.isfinite(chosen)]
    # The history each sampled user is served from (the published one), which holds their validation
    # items too: what the control plane reads for them when nothing has drifted.
    lengths = [len(h) for h in recent([run.history.train_sequences[u] for u in lists.users], run.spec.history_length)]
    counts = run.history.item_counts()
    assert not (answered == PAD).any()
    return DriftReference.of({"score": chosen[np.isfinite(chosen)], "history_length": lengths,
                              "popularity": np.log1p(counts[answered])}, requests=len(lists.users))
