"""Routes requests to experiment variants: experiments as Redis holds them (refreshed by the
watcher, so every replica routes alike), and the versions their variants need kept loaded."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from redis.exceptions import RedisError

from control_plane.experiments.assignment import assign
from control_plane.experiments.definition import HOLDOUT, Experiment, Variant
from control_plane.experiments.store import ExperimentStore, now
from control_plane.model_state import ModelState

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Route:
    """Where a request goes: its experiment, the variant name, that variant (None for the holdout),
    and the experiment's covariate window."""

    experiment: str
    variant: str
    config: Variant | None
    covariate_window_s: float


class ExperimentRouter:
    def __init__(self, store: ExperimentStore, models: ModelState) -> None:
        self.store = store
        self.models = models
        self.experiments: list[Experiment] = []

    async def refresh(self) -> None:
        """Read the experiments (keeping the last ones when Redis is away), send waiting records, and
        tell the model state which versions running variants use."""
        try:
            self.experiments = [e for e in await self.store.all() if not e.stopped]
        except (RedisError, OSError) as error:
            log.warning("experiments not refreshed, Redis unreachable: %s", error)
        await self.store.flush()
        variants = [v for e in self.experiments for v in e.variants]
        self.models.wanted = {v.retrieval_version for v in variants}
        self.models.wanted_ranking = {v.ranking_version for v in variants if v.ranking_version}

    def route(self, user_id: str, domain: str) -> Route | None:
        """The first running experiment (by name) that takes this request, and the user's arm in it."""
        moment = now()
        for experiment in self.experiments:
            if experiment.active(moment, domain):
                name = assign(experiment, user_id)
                config = next((v for v in experiment.variants if v.name == name), None)
                return Route(experiment.name, name, None if name == HOLDOUT else config,
                             experiment.covariate_window_days * 24 * 3600)
        return None
