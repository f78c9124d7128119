"""The worker's Celery app (settings in cinesync.jobs): the pipeline's tasks are in workers.tasks."""

from __future__ import annotations

from cinesync.jobs import celery_app
from cinesync.settings import get_settings

app = celery_app(get_settings(), include=["workers.tasks"])
