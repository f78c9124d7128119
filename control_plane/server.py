"""Runs the grpc.aio server: Recommend, health checking, reflection and a Prometheus endpoint."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server

from cinesync.settings import Settings
from cinesync.v1 import recommendation_pb2 as pb
from cinesync.v1 import recommendation_pb2_grpc as pb_grpc
from control_plane.model_state import ModelState
from control_plane.ranking import TritonRanker
from control_plane.service import RecommendationService

log = logging.getLogger(__name__)
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["RecommendationService"].full_name


async def _track_health(models: ModelState, health_servicer: health.aio.HealthServicer, interval: float) -> None:
    """SERVING once a model version is loaded; the watcher keeps it current."""
    while not await models.refresh():
        await asyncio.sleep(interval)
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    await models.watch(interval)


async def serve(settings: Settings) -> None:
    ranker = TritonRanker(settings.triton_url) if settings.triton_url else None
    models = ModelState(settings.serving_dir, ranker, candidates=settings.retrieval_candidates)
    server = grpc.aio.server()
    pb_grpc.add_RecommendationServiceServicer_to_server(
        RecommendationService(
            models, candidates=settings.retrieval_candidates, ranking_timeout=settings.ranking_timeout_s
        ),
        server,
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    reflection.enable_server_reflection(
        [SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME], server
    )
    address = f"{settings.host}:{settings.grpc_port}"
    port = server.add_insecure_port(address)
    if port == 0:
        raise RuntimeError(f"cannot listen on {address}")
    metrics_server, _ = start_http_server(settings.metrics_port, addr=settings.host)
    await server.start()
    log.info("control plane listening on %s:%d, metrics on :%d", settings.host, port, settings.metrics_port)
    watcher = asyncio.create_task(_track_health(models, health_servicer, settings.bundle_poll_s))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    watcher.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watcher
    await server.stop(grace=2.0)
    metrics_server.shutdown()
    if ranker is not None:
        await ranker.close()
