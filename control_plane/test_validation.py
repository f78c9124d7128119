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


def test_a_group_member_is_a_user_id_a_history_or_both() -> None:
    from control_plane.validation import parse_group_request

    query = parse_group_request(pb.GroupRecommendRequest(
        members=[pb.GroupMember(user_id="u1"), pb.GroupMember(history=["a", "b"]),
                 pb.GroupMember(user_id="u2", history=["c"])], k=7, domain=pb.DOMAIN_MOVIE, exclude_seen=False))
    assert [(m.user_id, m.history) for m in query.members] == [("u1", None), ("", ("a", "b")), ("u2", ("c",))]
    assert (query.k, query.domain, query.exclude_seen) == (7, "movie", False)
    assert all(m.k == 7 and m.domain == "movie" for m in query.members)


@pytest.mark.parametrize(
    ("members", "k", "message"),
    [
        ([], 5, r"members: a group has 1 to 20 members, got 0"),
        ([{"user_id": f"u{n}"} for n in range(21)], 5, "got 21"),
        ([{"user_id": "u1"}, {}], 5, r"members\[1\] needs a user_id or a history"),
        ([{"user_id": "bad id!"}], 5, r"members\[0\].user_id must be"),
        ([{"history": ["ok", "no good"]}], 5, r"members\[0\].history\[1\] must be an item id"),
        ([{"user_id": "u1"}], 0, "k must be"),
    ],
)
def test_bad_group_requests(members: list[dict[str, Any]], k: int, message: str) -> None:
    from control_plane.validation import parse_group_request

    with pytest.raises(InvalidRequest, match=message):
        parse_group_request(pb.GroupRecommendRequest(members=[pb.GroupMember(**m) for m in members], k=k))
