"""One tuning trial's work: fit a member kind with given hyper-parameters on the validation split
of a data set and return its validation NDCG@10. Every training loop reports each epoch's validation
figure to ``on_epoch`` (a tuner prunes there by raising). The test split is never read: the protocol
is built as training builds it, and only its validation part is fitted and scored."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from recsys.data import load_dataset
from recsys.data.splits import make_protocol
from recsys.kinds import MemberKind, UnknownOption, create, kind_class
from recsys.kinds.base import Progress, no_progress, parse_params
from recsys.kinds.space import Space, search_space
from recsys.metrics import evaluate_full_ranking
from recsys.pipeline import catalog_of
from recsys.training import EpochReport, epoch_reports

METRIC = "ndcg@10"


@dataclass(frozen=True)
class Target:
    """What a study tunes: one member kind on one data set and split (validation part only)."""

    data: str
    kind: str
    split: str = "auto"
    history_length: int = 0  # 0: recsys.pipeline.history_length_of's default for the data
    evaluation_users: int = 50_000
    seed: int = 0
    options: Mapping[str, Any] = field(default_factory=dict)  # fixed hyper-parameters besides the searched ones

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "options": dict(self.options)}


def checked_space(kind: str, overrides: Mapping[str, Space] | None = None) -> dict[str, Space]:
    """The kind's declared space with ``overrides`` (field -> range) applied; an unknown kind, a
    kind that is not a member, or a field the kind does not have is refused, named."""
    cls = kind_class(kind)  # UnknownOption for an unknown kind
    if not issubclass(cls, MemberKind):
        raise UnknownOption(f"{kind!r} is not a member kind: a study tunes one member on its validation NDCG@10")
    declared = search_space(cls.Params)
    fields = set(cls.Params.__dataclass_fields__)
    unknown = sorted(set(overrides or {}) - fields)
    if unknown:
        raise UnknownOption(f"{kind}: unknown hyper-parameter(s) {', '.join(unknown)} in the search space; "
                            f"valid: {', '.join(sorted(fields))}")
    space = {**declared, **(overrides or {})}
    if not space:
        raise UnknownOption(f"{kind} declares no search space and none was given (--space {kind}.FIELD=LOW:HIGH)")
    return space


def validation_ndcg(target: Target, options: Mapping[str, Any], *, progress: Progress = no_progress,
                    on_epoch: EpochReport | None = None) -> float:
    """Validation NDCG@10 of ``target.kind`` fitted with ``options`` on the validation split."""
    options = {**target.options, **options}
    parse_params(kind_class(target.kind).Params, options, owner=target.kind)  # refuse before loading data
    dataset = load_dataset(target.data, timestamped=target.split == "loo-time")
    catalog = catalog_of(dataset, history_length=target.history_length)
    protocol = make_protocol(dataset, split=target.split).sampled(target.evaluation_users, seed=target.seed)
    member = create(target.kind, catalog, dict(options), seed=target.seed)
    assert isinstance(member, MemberKind)
    token = epoch_reports.set(on_epoch)
    try:
        member.fit(protocol.validation, progress)
    finally:
        epoch_reports.reset(token)
    return float(evaluate_full_ranking(member.user_scores(protocol.validation), protocol.validation)[METRIC])
