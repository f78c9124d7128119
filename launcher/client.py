"""A gRPC client of the Recommend API, as other services call it: one channel per call target,
balanced round robin over every address the target resolves to, Recommend retried on another
replica when one is unavailable."""

from __future__ import annotations

import json
import time
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict

from cinesync.v1 import recommendation_pb2 as pb
from cinesync.v1 import recommendation_pb2_grpc as pb_grpc

# What a client of several control-plane replicas needs (gRPC's service config): spread calls over
# every resolved address, and retry the read-only calls on UNAVAILABLE (a replica gone) elsewhere.
SERVICE_CONFIG = json.dumps({
    "loadBalancingConfig": [{"round_robin": {}}],
    "methodConfig": [{
        "name": [{"service": "cinesync.v1.RecommendationService", "method": method}
                 for method in ("Recommend", "RecommendGroup")],
        "retryPolicy": {"maxAttempts": 4, "initialBackoff": "0.02s", "maxBackoff": "0.2s", "backoffMultiplier": 2,
                        "retryableStatusCodes": ["UNAVAILABLE"]},
    }],
})


def channel(target: str) -> grpc.Channel:
    """A channel to the control plane at ``target``: host:port, or a name for several replicas
    (``dns:///cinesync-control-plane:50051``, ``ipv4:127.0.0.1:50051,127.0.0.1:50052``)."""
    return grpc.insecure_channel(target, options=[("grpc.service_config", SERVICE_CONFIG), ("grpc.enable_retries", 1)])


def label(enum_name: str, prefix: str) -> str:
    """'DOMAIN_MOVIE', 'DOMAIN_' -> 'movie'."""
    return enum_name.removeprefix(prefix).lower()


def recommend(
    address: str, user_id: str, *, k: int = 10, domain: str = "any", exclude_seen: bool = True, timeout: float = 5.0
) -> pb.RecommendResponse:
    with channel(address) as opened:
        stub = pb_grpc.RecommendationServiceStub(opened)
        request = pb.RecommendRequest(
            user_id=user_id, k=k, domain=f"DOMAIN_{domain.upper()}", exclude_seen=exclude_seen
        )
        response: pb.RecommendResponse = stub.Recommend(request, timeout=timeout)
        return response


def record_feedback(
    address: str, request_id: str, user_id: str, item_id: str, *, kind: str = "watch", timeout: float = 5.0
) -> pb.FeedbackResponse:
    """RecordFeedback of ``kind`` (impression, click, watch) about the answer ``request_id``."""
    with channel(address) as opened:
        request = pb.FeedbackRequest(request_id=request_id, user_id=user_id, item_id=item_id,
                                     kind=f"FEEDBACK_KIND_{kind.upper()}")
        reply: pb.FeedbackResponse = pb_grpc.RecommendationServiceStub(opened).RecordFeedback(request, timeout=timeout)
        return reply


def wait_for_version(address: str, user_id: str, version: int, *, timeout: float = 120.0) -> pb.RecommendResponse:
    """Call Recommend until the control plane serves ``version`` ranked by Triton (or time runs out)."""
    deadline = time.monotonic() + timeout
    response, failure = None, ""
    while time.monotonic() < deadline:
        try:
            response, failure = recommend(address, user_id), ""
            if response.model_version == str(version) and response.ranked_by == pb.RANKED_BY_TRITON:
                return response
        except grpc.RpcError as error:
            if error.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise
            failure = error.code().name
        time.sleep(0.5)
    if response is None:
        raise TimeoutError(f"control plane at {address} did not answer within {timeout:.0f} s")
    now = f"its last call failed ({failure}); its last answer had" if failure else "it still answers with"
    raise VersionTimeout(
        f"after {timeout:.0f} s at {address}, {now} version {response.model_version or '(none)'}, ranked by "
        f"{pb.RankedBy.Name(response.ranked_by)}, not version {version} ranked by Triton",
        response,
    )


class VersionTimeout(TimeoutError):
    """The control plane answered, but not with the wanted version ranked by Triton, in time."""

    def __init__(self, message: str, last: pb.RecommendResponse) -> None:
        super().__init__(message)
        self.last = last  # the last answer it gave


def as_json(response: pb.RecommendResponse, user_id: str) -> dict[str, Any]:
    return {
        "user_id": user_id,
        "model_version": response.model_version,
        "ranked_by": label(pb.RankedBy.Name(response.ranked_by), "RANKED_BY_"),
        "degraded": response.degraded,
        "degraded_reason": response.degraded_reason,
        "cold_start": response.cold_start,
        "request_id": response.request_id,
        "experiment": response.experiment,
        "variant": response.variant,
        "items": [
            {
                **MessageToDict(item, preserving_proto_field_name=True),
                "domain": label(pb.Domain.Name(item.domain), "DOMAIN_"),
                "score": round(item.score, 6),
            }
            for item in response.items
        ],
    }


def format_table(response: pb.RecommendResponse, user_id: str) -> str:
    data = as_json(response, user_id)
    flags = "".join(f" · {flag}" for flag in ("degraded", "cold_start") if data[flag])
    lines = [
        (
            f"Top {len(data['items'])} for user {user_id} · model version {data['model_version']} · "
            f"ranked by {data['ranked_by']}{flags}"
        )
    ]
    for rank, item in enumerate(data["items"], start=1):
        lines.append(f"  {rank:>2}. {item['title'][:48]:<48} {item['domain']:<5} {item['score']:>9.4f}  [{item['item_id']}]")
    if data["degraded_reason"]:
        lines.append(f"  degraded: {data['degraded_reason']}")
    return "\n".join(lines)


class NoAdminToken(RuntimeError):
    """Neither the settings nor the home folder hold an admin token."""


def admin_request(address: str | None, method: str, request: Any) -> Any:
    """AdminService.``method`` on the control plane at ``address`` (default: the settings' host and
    port) with the settings' first admin token; grpc.RpcError as the server answered."""
    from cinesync.settings import get_settings

    settings = get_settings()
    tokens = settings.admin_token_list()
    if not tokens:
        raise NoAdminToken(f"no admin token: set CINESYNC_ADMIN_TOKENS or start the stack ({settings.admin_token_file})")
    return admin_call(address or f"{settings.host}:{settings.grpc_port}", method, request, token=tokens[0])


def admin_call(address: str, method: str, request: Any, *, token: str, timeout: float = 30.0) -> Any:
    """Call AdminService.``method`` with the bearer token."""
    from cinesync.v1 import admin_pb2_grpc

    with channel(address) as opened:
        stub = admin_pb2_grpc.AdminServiceStub(opened)
        return getattr(stub, method)(request, timeout=timeout, metadata=(("authorization", f"Bearer {token}"),))
