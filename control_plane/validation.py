"""Checks Recommend and RecordFeedback requests; every problem becomes an INVALID_ARGUMENT message."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import cast

from cinesync.v1 import recommendation_pb2 as pb
from control_plane.experiments.store import Feedback

MAX_K = 1000
USER_ID = re.compile(r"[A-Za-z0-9_.:\-]{1,128}")
ITEM_ID = USER_ID
REQUEST_ID = re.compile(r"[0-9a-f]{32}")
MAX_HISTORY = 10_000  # items of a sent history that count (the most recent); longer ones are cut, not refused
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


def parse_request(request: pb.RecommendRequest) -> RecommendQuery:
    if not USER_ID.fullmatch(request.user_id):
        raise InvalidRequest("user_id must be 1-128 characters of letters, digits and _ . : -")
    if not 1 <= request.k <= MAX_K:
        raise InvalidRequest(f"k must be between 1 and {MAX_K}, got {request.k}")
    domain = DOMAINS.get(request.domain)
    if domain is None:
        raise InvalidRequest(f"unknown domain {request.domain}: expected DOMAIN_ANY, DOMAIN_MOVIE or DOMAIN_TV")
    exclude_seen = request.exclude_seen if request.HasField("exclude_seen") else True
    for position, item_id in enumerate(request.history):
        if not ITEM_ID.fullmatch(item_id):
            raise InvalidRequest(f"history[{position}] must be an item id: 1-128 characters of letters, digits "
                                 f"and _ . : -, got {item_id!r}")
    history = tuple(request.history[-MAX_HISTORY:]) if len(request.history) else None
    return RecommendQuery(request.user_id, request.k, domain, exclude_seen, request.explain, history)


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
