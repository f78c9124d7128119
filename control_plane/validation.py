"""Checks Recommend, RecommendGroup and RecordFeedback requests; every problem becomes an INVALID_ARGUMENT message."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from cinesync.groups import MAX_MEMBERS
from cinesync.triton import MAX_HISTORY
from cinesync.v1 import recommendation_pb2 as pb
from control_plane.experiments.store import Feedback

MAX_K = 1000
USER_ID = re.compile(r"[A-Za-z0-9_.:\-]{1,128}")
ITEM_ID = USER_ID
REQUEST_ID = re.compile(r"[0-9a-f]{32}")
FEEDBACK_KINDS = {value: pb.FeedbackKind.Name(value).removeprefix("FEEDBACK_KIND_").lower()
                  for value in pb.FeedbackKind.values() if value}
# Proto enum value <-> catalog domain name ("any" for DOMAIN_ANY).
DOMAINS = {value: pb.Domain.Name(value).removeprefix("DOMAIN_").lower() for value in pb.Domain.values()}
DOMAIN_VALUES = {name: cast(pb.Domain, value) for value, name in DOMAINS.items()}


MAX_MESSAGE = 1000  # characters of an error message; longer ones would not fit gRPC's metadata limits


class InvalidRequest(ValueError):
    pass


def shorten(message: str) -> str:
    """``message`` cut to MAX_MESSAGE characters (it may quote a huge malformed value)."""
    return message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 1] + "…"


@dataclass(frozen=True)
class RecommendQuery:
    user_id: str
    k: int
    domain: str  # "any" | "movie" | "tv"
    exclude_seen: bool
    explain: bool = False
    history: tuple[str, ...] | None = None  # item ids, most recent last, when the request sent them


@dataclass(frozen=True)
class GroupQuery:
    """A group request: each member as a query of its own (user id and/or history), and the group's
    k, domain and exclude_seen."""

    members: tuple[RecommendQuery, ...]
    k: int
    domain: str
    exclude_seen: bool


def _k(k: int) -> int:
    if not 1 <= k <= MAX_K:
        raise InvalidRequest(f"k must be between 1 and {MAX_K}, got {k}")
    return k


def _domain(value: int) -> str:
    domain = DOMAINS.get(value)
    if domain is None:
        raise InvalidRequest(f"unknown domain {value}: expected DOMAIN_ANY, DOMAIN_MOVIE or DOMAIN_TV")
    return domain


def _history(item_ids: Sequence[str], field: str) -> tuple[str, ...] | None:
    """The most recent MAX_HISTORY ids of a sent history (None when empty), each checked."""
    for position, item_id in enumerate(item_ids):
        if not ITEM_ID.fullmatch(item_id):
            raise InvalidRequest(f"{field}[{position}] must be an item id: 1-128 characters of letters, digits "
                                 f"and _ . : -, got {item_id!r}")
    return tuple(item_ids[-MAX_HISTORY:]) if len(item_ids) else None


def parse_request(request: pb.RecommendRequest) -> RecommendQuery:
    if not USER_ID.fullmatch(request.user_id):
        raise InvalidRequest("user_id must be 1-128 characters of letters, digits and _ . : -")
    exclude_seen = request.exclude_seen if request.HasField("exclude_seen") else True
    return RecommendQuery(request.user_id, _k(request.k), _domain(request.domain), exclude_seen, request.explain,
                          _history(request.history, "history"))


def parse_group_request(request: pb.GroupRecommendRequest) -> GroupQuery:
    if not 1 <= len(request.members) <= MAX_MEMBERS:
        raise InvalidRequest(f"members: a group has 1 to {MAX_MEMBERS} members, got {len(request.members)}")
    k, domain = _k(request.k), _domain(request.domain)
    exclude_seen = request.exclude_seen if request.HasField("exclude_seen") else True
    members = []
    for position, member in enumerate(request.members):
        if member.user_id and not USER_ID.fullmatch(member.user_id):
            raise InvalidRequest(f"members[{position}].user_id must be 1-128 characters of letters, digits and _ . : -")
        history = _history(member.history, f"members[{position}].history")
        if not member.user_id and history is None:
            raise InvalidRequest(f"members[{position}] needs a user_id or a history")
        members.append(RecommendQuery(member.user_id, k, domain, exclude_seen, history=history))
    return GroupQuery(tuple(members), k, domain, exclude_seen)


def parse_feedback(request: pb.FeedbackRequest) -> Feedback:
    if not REQUEST_ID.fullmatch(request.request_id):
        raise InvalidRequest("request_id must be the 32 hex digits a Recommend answer carried")
    if not USER_ID.fullmatch(request.user_id):
        raise InvalidRequest("user_id must be 1-128 characters of letters, digits and _ . : -")
    if not ITEM_ID.fullmatch(request.item_id):
        raise InvalidRequest("item_id must be 1-128 characters of letters, digits and _ . : -")
    kind = FEEDBACK_KINDS.get(request.kind)
    if kind is None:
        raise InvalidRequest(f"kind must be one of {', '.join(f'FEEDBACK_KIND_{k.upper()}' for k in FEEDBACK_KINDS.values())}")
    if kind == "rating" and not 1 <= request.value <= 10:
        raise InvalidRequest(f"a rating's value must be between 1 and 10, got {request.value:g}")
    return Feedback(request.request_id, request.user_id, request.item_id, kind, float(request.value), time.time())
