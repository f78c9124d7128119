"""Request validation: every bad field is an InvalidRequest with a message."""

from __future__ import annotations

from typing import Any

import pytest

from cinesync.v1 import recommendation_pb2 as pb
from control_plane.validation import InvalidRequest, parse_request


def test_valid_request_defaults_to_excluding_seen() -> None:
    query = parse_request(pb.RecommendRequest(user_id="u1", k=5, domain=pb.DOMAIN_TV))
    assert (query.user_id, query.k, query.domain, query.exclude_seen) == ("u1", 5, "tv", True)
    assert not parse_request(pb.RecommendRequest(user_id="u1", k=5, exclude_seen=False)).exclude_seen


@pytest.mark.parametrize(
    ("request_fields", "message"),
    [
        ({"user_id": "u1", "k": 0}, "k must be"),
        ({"user_id": "u1", "k": 1001}, "k must be"),
        ({"user_id": "", "k": 5}, "user_id"),
        ({"user_id": "bad id!", "k": 5}, "user_id"),
        ({"user_id": "x" * 129, "k": 5}, "user_id"),
        ({"user_id": "u1", "k": 5, "domain": 7}, "unknown domain"),
    ],
)
def test_bad_requests(request_fields: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        parse_request(pb.RecommendRequest(**request_fields))
