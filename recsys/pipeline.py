"""The training job's steps: fit the kinds a pipeline names, stack the fusion on validation, refit,
then evaluate every kind and the served cascade on the test split (touched once, in ``evaluate``)."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from cinesync.splits import CROSS_DOMAIN
from cinesync.triton import MAX_HISTORY
from recsys.candidates import CandidateLists, evaluate_lists, rank_lists
from recsys.cascade import candidate_lists
from recsys.data import InteractionDataset, load_dataset
from recsys.data.splits import COLD_ITEMS, SPLITS, make_protocol
from recsys.features import build_feature_tables, build_item_features
from recsys.footprint import Footprint, available_bytes, estimate, refuse_beyond
from recsys.groups import GroupRanker, choose_tilt
from recsys.kinds import MemberKind, Role, UnknownOption, create, kind_class
from recsys.kinds.base import DEFAULT_HISTORY_LENGTH, Catalog, Progress, no_progress, parse_params
from recsys.kinds.fusion import DcnFusion
from recsys.metrics import evaluate_full_ranking, evaluate_ranked, rank_full, report
from recsys.run import FITS, MANIFEST, TrainedRun, load_run, new_run_id, save_run
from recsys.training import Checkpoints

METRICS_FILE = "metrics.json"
REPORT_FILE = "report.json"
CASCADE = "cascade"  # the metrics key of what serving runs


@dataclass
class PipelineSpec:
    """Which kinds a pipeline trains and how the served cascade combines them."""

    # Empty: the defaults for the split (loo-time adds the order-aware kinds, a cross-domain split
    # ease_transfer, cold-items ease_content).
    members: list[str] = field(default_factory=list)
    retrievers: list[str] = field(default_factory=list)
    fusion: str = "dcn_fusion"
    depth: int = 100  # candidates each retriever proposes per user
    # The most recent items of a user's history that models see (and serving sends); 0: resolved by
    # history_length_of when training starts (200 where histories are in time order, a set whole).
    history_length: int = 0
    options: dict[str, dict[str, Any]] = field(default_factory=dict)  # kind name -> hyper-parameters
    seed: int = 0
    split: str = "auto"  # recsys.data.splits.make_protocol's choices
    # Held-out users that validation choices, the fusion's training lists and test metrics read: a
    # seeded sample of this many where a split has more (0: all). Every shared data set has fewer.
    evaluation_users: int = 50_000
    # The tuned configuration the options came from (`cinesync train --config`): name, study, trial.
    configuration: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        next_watch, cross_domain = self.split == "loo-time", self.split in CROSS_DOMAIN
        extra = ["ease_transfer"] if cross_domain else ["ease_content"] if self.split == COLD_ITEMS else []
        if not self.members:
            self.members = ["popularity", "ease", "two_tower", *(["slist", "sasrec"] if next_watch else []), *extra]
        if not self.retrievers:
            self.retrievers = [*extra, "ease", "two_tower", *(["sasrec"] if next_watch else [])]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> PipelineSpec:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(values) - known)
        if unknown:
            raise UnknownOption(f"unknown pipeline setting(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
        return cls(**values)

    def footprint(self, *, users: int, items: int, interactions: int) -> Footprint:
        """This pipeline's estimated peak memory in training on a data set of these sizes."""
        return estimate(users=users, items=items, interactions=interactions, members=self.members,
                        retrievers=len(self.retrievers), depth=self.depth, evaluation_users=self.evaluation_users,
                        options=self.options)

    def retrieving(self, members: Sequence[MemberKind]) -> list[MemberKind]:
        """The members that propose candidates, in the pipeline's order."""
        return [member for member in members if member.name in self.retrievers]

    def check(self) -> None:
        """Fail before any work on an unknown kind or hyper-parameter, or a kind in the wrong role."""
        for name, options in self.options.items():
            parse_params(kind_class(name).Params, options, owner=name)
            if name not in (*self.members, self.fusion):
                raise UnknownOption(f"options for {name!r}, which is not in the pipeline "
                                    f"(members: {', '.join(self.members)}; fusion: {self.fusion})")
        if len(set(self.members)) != len(self.members):
            raise UnknownOption(f"each member kind may appear once: {', '.join(self.members)}")
        for name in self.members:
            if not issubclass(kind_class(name), MemberKind):
                raise UnknownOption(f"{name!r} is not a member kind (it cannot score users × items)")
        for name in self.retrievers:
            if name not in self.members or Role.RETRIEVER not in kind_class(name).roles:
                raise UnknownOption(f"retriever {name!r} must be one of the members whose kind retrieves")
        if Role.FUSION not in kind_class(self.fusion).roles:
            raise UnknownOption(f"{self.fusion!r} is not a fusion kind")
        if self.depth < 1:
            raise UnknownOption(f"depth must be at least 1, got {self.depth}")
        if self.split not in SPLITS:
            raise UnknownOption(f"unknown split {self.split!r}; valid: {', '.join(SPLITS)}")
        if not 0 <= self.history_length <= MAX_HISTORY:
            raise UnknownOption(f"history_length must be 0 (the data's default) or 1-{MAX_HISTORY}, "
                                f"got {self.history_length}")
        if self.evaluation_users < 0:
            raise UnknownOption(f"evaluation_users must be 0 (all) or more, got {self.evaluation_users}")


def history_length_of(dataset: InteractionDataset, requested: int = 0) -> int:
    """The history length a run's kinds read and serving sends: ``requested`` when set; else, where
    histories are in time order, their most recent DEFAULT_HISTORY_LENGTH items; where the data has no
    time order a history is a set with no recent part, so all of it is read: the longest user's
    (at most MAX_HISTORY, what a request's history may hold)."""
    if requested:
        return requested
    if dataset.timestamps is not None:
        return DEFAULT_HISTORY_LENGTH
    longest = int(np.bincount(dataset.user_idx, minlength=1).max())
    return max(1, min(longest, MAX_HISTORY))


def catalog_of(dataset: InteractionDataset, *, history_length: int = 0) -> Catalog:
    return Catalog(
        n_users=dataset.n_users,
        n_items=dataset.n_items,
        items=tuple(dataset.items),
        item_features=build_item_features(dataset.items),
        ordered=dataset.timestamps is not None,
        history_length=history_length_of(dataset, history_length),
    )


def train(
    data_spec: str, runs_dir: Path, spec: PipelineSpec, progress: Progress = no_progress, *,
    checkpoint_dir: Path | None = None,
) -> Path:
    """Fit members on the validation split, the fusion on their validation candidates, then refit
    the members on the whole training part; returns the run folder. Test is not looked at. A run whose
    estimated peak memory is more than is available is refused (RunTooLarge) before any fitting.

    With ``checkpoint_dir`` every neural training loop checkpoints there after each epoch, and a
    train run again with the same folder (a redelivered job) resumes where the loops stopped."""
    spec.check()
    dataset = load_dataset(data_spec, timestamped=spec.split == "loo-time")
    refuse_beyond(spec.footprint(users=dataset.n_users, items=dataset.n_items, interactions=dataset.n_interactions),
                  limit=available_bytes(), what=f"training on {dataset.summary()}")
    spec = replace(spec, history_length=history_length_of(dataset, spec.history_length))
    catalog = catalog_of(dataset, history_length=spec.history_length)
    protocol = make_protocol(dataset, split=spec.split).sampled(spec.evaluation_users, seed=spec.seed)
    checkpoints = Checkpoints(checkpoint_dir) if checkpoint_dir is not None else None
    started = time.monotonic()
    members: list[MemberKind] = []
    for name in spec.members:
        member = create(name, catalog, spec.options.get(name), seed=spec.seed)
        assert isinstance(member, MemberKind)
        member.checkpoints = checkpoints
        member.fit(protocol.validation, progress)
        members.append(member)
    validation_tables = build_feature_tables(protocol.validation, catalog.item_features,
                                             history_length=spec.history_length)
    lists = candidate_lists(members, spec.retrieving(members), validation_tables, protocol.validation,
                            depth=spec.depth)
    fusion = create(spec.fusion, catalog, spec.options.get(spec.fusion), seed=spec.seed)
    assert isinstance(fusion, DcnFusion)
    fusion.checkpoints = checkpoints
    views = protocol.validation_views()  # a cold-item split: its cold titles ranked among themselves
    cold_lists = (candidate_lists(members, spec.retrieving(members), validation_tables, views["cold"],
                                  depth=spec.depth), views["cold"]) if "cold" in views else None
    fusion.fit(lists, protocol.validation, [m.name for m in members], progress, cold_lists=cold_lists)
    # The group rule's tilt, while the members are the ones fitted without the validation items.
    groups = choose_tilt(GroupRanker(members=members, retrievers=spec.retrieving(members), fusion=fusion,
                                     tables=validation_tables, split=protocol.validation, depth=spec.depth))
    progress("group aggregation tilt on validation groups", 1, 1, float(groups["tilt"]), "tilt")
    for member in members:
        member.refit(protocol.test.train_sequences, progress)
    folder = Path(runs_dir) / new_run_id()
    save_run(
        folder, dataset=dataset, data_spec=data_spec, protocol=protocol, spec=spec, members=members, fusion=fusion,
        train_seconds=time.monotonic() - started, resumed=checkpoints.resumed if checkpoints else [], groups=groups,
    )
    return folder


def cascade_lists(run: TrainedRun) -> CandidateLists:
    """The served cascade's candidate lists for the run's test users (what serving retrieves)."""
    return candidate_lists(run.members, run.spec.retrieving(run.members), run.tables, run.protocol.test,
                           depth=run.spec.depth)


def evaluate(run_folder: Path) -> dict[str, dict[str, float]]:
    """Test metrics of every member alone and of the served cascade; saved with the run."""
    run = load_run(run_folder)
    split = run.protocol.test
    metrics = {member.name: evaluate_full_ranking(member.user_scores(split), split) for member in run.members}
    lists = cascade_lists(run)
    metrics[CASCADE] = evaluate_lists(lists, run.fusion.score(lists), split)
    (Path(run_folder) / METRICS_FILE).write_text(json.dumps(metrics, indent=2))
    return metrics


def beyond_accuracy_report(run_folder: Path) -> dict[str, dict[str, dict[str, float]]]:
    """recsys.metrics.report of every member alone and of the served cascade on the test split:
    kind -> user group -> metric; saved with the run as report.json."""
    run = load_run(run_folder)
    split, items = run.protocol.test, run.catalog.item_features
    reports = {}
    for member in run.members:
        ranked, users = rank_full(member.user_scores(split), split)
        reports[member.name] = report(ranked, split, users, items)
    lists = cascade_lists(run)
    reports[CASCADE] = report(rank_lists(lists.items, run.fusion.score(lists)), split, lists.users, items)
    (Path(run_folder) / REPORT_FILE).write_text(json.dumps(reports, indent=2))
    return reports


def views_report(run_folder: Path, *, k: int = 20) -> dict[str, dict[str, dict[str, float]]]:
    """Test metrics at ``k`` of every member and the served cascade on each of the protocol's views
    (recsys.data.splits.Protocol.views: cold, warm and all items for a cold-item split): view -> kind
    -> metric."""
    run = load_run(run_folder)
    wanted = (f"ndcg@{k}", f"recall@{k}", f"hr@{k}", "users")
    reports: dict[str, dict[str, dict[str, float]]] = {}
    for view, split in run.protocol.views().items():
        by_kind = {}
        for member in run.members:
            ranked, users = rank_full(member.user_scores(split), split)
            metrics = evaluate_ranked(ranked, split, users)
            by_kind[member.name] = {name: metrics[name] for name in wanted}
        lists = candidate_lists(run.members, run.spec.retrieving(run.members), run.tables, split, depth=run.spec.depth)
        metrics = evaluate_lists(lists, run.fusion.score(lists), split)
        by_kind[CASCADE] = {name: metrics[name] for name in wanted}
        reports[view] = by_kind
    return reports


def refit_on_everything(run_folder: Path, progress: Progress = no_progress) -> None:
    """Refit the members on every interaction (test items included) with the choices validation
    made, for the version users get; the fusion and the evaluated figures stay those of the run."""
    run = load_run(run_folder)
    everything = run.protocol.test.everything()
    started = time.monotonic()
    for member in run.members:
        member.refit(everything.train_sequences, progress)
        member.save(Path(run_folder) / FITS["all"] / member.name)
    manifest_path = Path(run_folder) / MANIFEST
    manifest = json.loads(manifest_path.read_text())
    manifest["refit_on_all"] = {
        "interactions": int(sum(len(s) for s in everything.train_sequences)),
        "seconds": round(time.monotonic() - started, 1),
    }
    manifest_path.write_text(json.dumps(manifest, indent=2))
