"""Runs the grpc.aio server: Recommend and RecordFeedback, the token-checked AdminService, health
checking, reflection and a Prometheus endpoint."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import REGISTRY, start_http_server
from redis import asyncio as aioredis

from cinesync.jobs import celery_app
from cinesync.settings import Settings
from cinesync.v1 import admin_pb2_grpc as admin_grpc
from cinesync.v1 import recommendation_pb2 as pb
from cinesync.v1 import recommendation_pb2_grpc as pb_grpc
from control_plane.admin import ADMIN_SERVICE, AdminAuth, AdminService
from control_plane.bundle import ServingBundle
from control_plane.encoder_cache import EncoderCache
from control_plane.experiments.router import ExperimentRouter
from control_plane.experiments.store import ExperimentStore
from control_plane.federation import Federation
from control_plane.history import HistoryStore
from control_plane.jobs import JobRegistry
from control_plane.metrics import JOB_QUEUE_DEPTH, FederatedRunsCollector
from control_plane.model_state import ModelState
from control_plane.quality import QualityCollector, QualityWindow
from control_plane.ranking import TritonRanker
from control_plane.service import RecommendationService

log = logging.getLogger(__name__)
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["RecommendationService"].full_name


async def _track_health(
    models: ModelState, refresh: Callable[[], Awaitable[None]], health_servicer: health.aio.HealthServicer,
    interval: float,
) -> None:
    """SERVING once a model version is loaded; the watcher keeps it, the experiments and the records
    waiting for Redis current (``refresh``)."""
    while not await models.refresh_all(refresh):
        await asyncio.sleep(interval)
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    await models.watch(interval, before=refresh)


async def _track_job_queue(redis: aioredis.Redis, queue: str, interval: float) -> None:
    """The Celery queue's depth (its Redis list's length) as cinesync_job_queue_depth, every ``interval``."""
    while True:
        try:
            JOB_QUEUE_DEPTH.set(await redis.llen(queue))
        except aioredis.RedisError as error:
            log.debug("job queue depth unavailable: %s", error)
        await asyncio.sleep(interval)


def _bundle_of(models: ModelState, version: int) -> ServingBundle | None:
    """The loaded bundle of ``version`` (None once unloaded), read from the metrics thread."""
    state = models.states.get(version)
    return state.bundle if state is not None else None


async def serve(settings: Settings) -> None:
    ranker = TritonRanker(settings.triton_url) if settings.triton_url else None
    histories = HistoryStore(settings.redis_url, settings.redis_namespace, keep=settings.history_keep,
                             spool_dir=settings.home / "spool")
    models = ModelState(settings.serving_dir, ranker, candidates=settings.retrieval_candidates, histories=histories)
    store = ExperimentStore(settings.redis_url, settings.redis_namespace, spool_dir=settings.home / "spool")
    router = ExperimentRouter(store, models)
    tokens = settings.admin_token_list()
    if not tokens and settings.require_admin_tokens:
        raise SystemExit("no admin tokens: set CINESYNC_ADMIN_TOKENS (CINESYNC_REQUIRE_ADMIN_TOKENS is on, so the "
                         "control plane does not start without them)")
    if not tokens:
        log.warning("no admin tokens (CINESYNC_ADMIN_TOKENS): every admin call will be refused")
    server = grpc.aio.server(
        interceptors=[AdminAuth(tokens)],
        maximum_concurrent_rpcs=settings.max_concurrent_rpcs,
        options=[("grpc.max_receive_message_length", settings.max_message_bytes),
                 ("grpc.max_send_message_length", settings.max_message_bytes),
                 *([("grpc.max_connection_age_ms", int(settings.max_connection_age_s * 1000)),
                    ("grpc.max_connection_age_grace_ms", int(settings.max_connection_age_s * 1000))]
                   if settings.max_connection_age_s else [])],
    )
    quality = QualityWindow(settings.quality_window)
    service = RecommendationService(
        models, candidates=settings.retrieval_candidates, ranking_timeout=settings.ranking_timeout_s,
        router=router, histories=histories,
        history_kinds=frozenset({"watch", "click"} if settings.history_on_click else {"watch"}),
        encoder_cache=EncoderCache(max_entries=settings.encoder_cache_entries, idle_s=settings.encoder_cache_idle_s),
        quality=quality,
    )
    pb_grpc.add_RecommendationServiceServicer_to_server(service, server)
    celery = celery_app(settings)
    admin_grpc.add_AdminServiceServicer_to_server(
        AdminService(
            repository=settings.model_repository.resolve(), serving_dir=settings.serving_dir, router=router,
            celery=celery, registry=JobRegistry(store.redis, settings.redis_namespace),
            federation=Federation(settings, celery), settings=settings,
        ),
        server,
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    reflection.enable_server_reflection(
        [SERVICE_NAME, ADMIN_SERVICE, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
         reflection.SERVICE_NAME],
        server,
    )
    address = f"{settings.host}:{settings.grpc_port}"
    if settings.tls_cert is not None and settings.tls_key is not None:
        credentials = grpc.ssl_server_credentials([(settings.tls_key.read_bytes(), settings.tls_cert.read_bytes())])
        port = server.add_secure_port(address, credentials)
    else:
        port = server.add_insecure_port(address)
    if port == 0:
        raise RuntimeError(f"cannot listen on {address}")
    REGISTRY.register(FederatedRunsCollector(settings.home))
    REGISTRY.register(QualityCollector(quality, lambda version: _bundle_of(models, version)))
    metrics_server, _ = start_http_server(settings.metrics_port, addr=settings.host)
    await server.start()
    log.info("control plane listening on %s:%d, metrics on :%d", settings.host, port, settings.metrics_port)
    async def refresh() -> None:  # what waited for Redis is sent on each round of the watcher
        try:
            await router.refresh()
        finally:  # a failed experiments refresh (logged by the watcher) does not hold the watches back
            await service.replay_watches()

    watcher = asyncio.create_task(_track_health(models, refresh, health_servicer, settings.bundle_poll_s))
    queue_depth = asyncio.create_task(_track_job_queue(store.redis, settings.job_queue, settings.bundle_poll_s))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    queue_depth.cancel()
    watcher.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):  # its failures were logged
        await watcher
    await server.stop(grace=2.0)
    metrics_server.shutdown()
    await service.replay_watches()  # while the ranker is open: replayed users are encoded again
    if ranker is not None:
        await ranker.close()
    await store.flush()
    await store.close()
    await histories.close()
