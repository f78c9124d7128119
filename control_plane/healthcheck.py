"""`python -m control_plane.healthcheck`: exit 0 when the control plane on this host answers its gRPC
health service with SERVING (a container's HEALTHCHECK); 1 otherwise, saying why. With TLS on, the
check is that the port accepts connections (the orchestrator's own gRPC probe does the rest)."""

from __future__ import annotations

import socket
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cinesync.settings import Settings, get_settings
from cinesync.v1 import recommendation_pb2 as pb

TIMEOUT_S = 3.0
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["RecommendationService"].full_name


def check(settings: Settings, *, host: str = "127.0.0.1") -> str:
    """"" when healthy, else what is wrong."""
    address = f"{host}:{settings.grpc_port}"
    if settings.tls_cert is not None:
        try:
            socket.create_connection((host, settings.grpc_port), timeout=TIMEOUT_S).close()
        except OSError as error:
            return f"{address}: {error}"
        return ""
    try:
        with grpc.insecure_channel(address) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=TIMEOUT_S)
    except grpc.RpcError as error:
        return f"{address}: {error.code().name}"
    serving = reply.status == health_pb2.HealthCheckResponse.SERVING
    return "" if serving else f"{address}: {health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)}"


def main() -> None:
    problem = check(get_settings())
    if problem:
        print(f"unhealthy: {problem}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
