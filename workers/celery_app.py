"""The Celery app: Redis as broker and result backend, late acks so a killed worker's job is redelivered."""

from __future__ import annotations

from celery import Celery

from cinesync.settings import get_settings


def create_app() -> Celery:
    settings = get_settings()
    app = Celery("cinesync", broker=settings.redis_url, backend=settings.redis_url, include=["workers.tasks"])
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_track_started=True,
        result_extended=True,
        result_expires=7 * 24 * 3600,
        task_default_queue=settings.job_queue,
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout_s,
            # Sweep for unacknowledged jobs of dead workers at least every 10 s (kombu's default
            # sweep is about every 100 s), so a redelivered job starts soon after its timeout.
            "unacked_restore_interval": max(1, min(10, settings.visibility_timeout_s // 2)),
            "unacked_restore_throttle": 1,
        },
        result_backend_transport_options={"visibility_timeout": settings.visibility_timeout_s},
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
    )
    return app


app = create_app()
