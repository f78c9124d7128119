"""wait_for_version against a real gRPC server on a socket that never serves the wanted version."""

from __future__ import annotations

from concurrent import futures

import grpc
import pytest

from cinesync.v1 import recommendation_pb2 as pb
from cinesync.v1 import recommendation_pb2_grpc as pb_grpc
from launcher.client import VersionTimeout, wait_for_version


class _StuckOnVersionOne(pb_grpc.RecommendationServiceServicer):
    def Recommend(self, request: pb.RecommendRequest, context: grpc.ServicerContext) -> pb.RecommendResponse:
        return pb.RecommendResponse(model_version="1", ranked_by=pb.RANKED_BY_RETRIEVAL)


def test_a_version_never_served_is_a_timeout_that_names_what_is_served() -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    pb_grpc.add_RecommendationServiceServicer_to_server(_StuckOnVersionOne(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with pytest.raises(VersionTimeout, match="it still answers with version 1, ranked by RANKED_BY_RETRIEVAL") as late:
            wait_for_version(f"127.0.0.1:{port}", "u1", 2, timeout=1.0)
        assert late.value.last.model_version == "1"
    finally:
        server.stop(grace=None)
