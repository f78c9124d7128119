"""Training jobs as every role sees them: the pipeline's Celery task names, the chain a job is, the
Celery app (worker or client), and following a job's progress. Celery only; no task code here."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import Any

from celery import Celery, chain
from celery.canvas import Signature
from celery.result import AsyncResult

from cinesync.settings import Settings

TRAIN, EVALUATE, REFIT, EXPORT, PUBLISH, ADD_TITLES = (
    f"cinesync.{step}" for step in ("train", "evaluate", "refit", "export", "publish", "add_titles"))
PROGRESS = "PROGRESS"  # the state a running step reports, with its meta (step, stage, epoch, percent …)


class JobFailed(RuntimeError):
    """A step of the job failed, or it did not finish in time; the message says which and why."""


def celery_app(settings: Settings, *, include: Iterable[str] = ()) -> Celery:
    """The Celery app on Redis: late acks, so a killed worker's job is delivered again."""
    app = Celery("cinesync", broker=settings.redis_url, backend=settings.redis_url, include=list(include))
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


def pipeline(app: Celery, data: str, options: dict[str, Any] | None = None, *, publish: bool = True,
             serve: str = "all") -> Signature:
    """train → evaluate (→ refit → export → publish) as one chain of the named tasks.

    ``serve="all"`` publishes the members refit on every interaction (what users should get);
    ``serve="train"`` publishes the evaluated fit, whose served answers score as evaluate did.
    """
    if serve not in ("all", "train"):
        raise ValueError(f"serve must be 'all' or 'train', not {serve!r}")
    steps = [app.signature(TRAIN, args=(data, options)), app.signature(EVALUATE)]
    if publish:
        steps += [*([app.signature(REFIT)] if serve == "all" else []), app.signature(EXPORT), app.signature(PUBLISH)]
    return chain(*steps)


def catalog_update(app: Celery, run_dir: str, titles_file: str, *, serve: str | None = None,
                   publish: bool = True) -> Signature:
    """add titles (→ export → publish) as one chain: a new run with the titles of ``titles_file``
    grown into every member of ``run_dir`` (no retraining), served from its ``serve`` fit ("all" or
    "train"; None: "all" where the run has it)."""
    if serve not in (None, "all", "train"):
        raise ValueError(f"serve must be 'all', 'train' or None, not {serve!r}")
    steps = [app.signature(ADD_TITLES, args=(run_dir, titles_file), kwargs={"serve": serve})]
    if publish:
        steps += [app.signature(EXPORT), app.signature(PUBLISH)]
    return chain(*steps)


def federated_publish(app: Celery, run_dir: str) -> Signature:
    """export → publish of a federated run's global model (a training run whose only fit is "train"),
    published as a new version without becoming current: an experiment puts it against the current one."""
    previous = {"run_dir": run_dir, "fitted_on": "train", "make_current": False}
    return chain(app.signature(EXPORT, args=(previous,)), app.signature(PUBLISH))


def pipeline_options(settings_by_key: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """("kind.param", value) pairs -> the pipeline's per-kind options (the worker checks the names)."""
    options: dict[str, dict[str, str]] = {}
    for key, value in settings_by_key:
        kind, dot, param = key.partition(".")
        if not dot or not kind or not param:
            raise ValueError(f"{key!r}: expected KIND.PARAM, e.g. two_tower.epochs")
        options.setdefault(kind, {})[param] = value
    return {"options": options} if options else {}


def describe(meta: dict[str, Any]) -> str:
    """One line of progress: step, stage, epoch, loss, validation NDCG@10, percent."""
    parts = [str(meta.get("step", ""))]
    if "stage" in meta:
        parts.append(str(meta["stage"]))
    if "epoch" in meta:
        parts.append(f"epoch {meta['epoch']}/{meta['epochs']}")
    parts += [f"{key} {value:.4f}" for key, value in meta.items() if key in ("loss", "validation ndcg@10")]
    if "percent" in meta:
        parts.append(f"{meta['percent']:.0f}%")
    return " · ".join(parts)


def status(app: Celery, ids: list[str]) -> dict[str, Any]:
    """Where the job stands now: {"state": PENDING | PROGRESS | SUCCESS | FAILURE, ...meta or result}."""
    nodes = [AsyncResult(task_id, app=app) for task_id in ids]
    for node in nodes:
        if node.state == "FAILURE":
            return {"state": "FAILURE", "error": f"task {node.name or node.id} failed: {node.result!r}"}
    if nodes[-1].state == "SUCCESS":
        return {"state": "SUCCESS", "result": nodes[-1].get(propagate=False)}
    running = [n for n in nodes if n.state == PROGRESS and isinstance(n.info, dict)]
    return {"state": PROGRESS, **running[-1].info} if running else {"state": "PENDING"}


def chain_ids(last: AsyncResult) -> list[str]:
    """The task ids of a submitted chain, first step first."""
    ids, node = [], last
    while node is not None:
        ids.append(node.id)
        node = node.parent
    return ids[::-1]


def progress(app: Celery, ids: list[str], *, timeout: float = 3600.0, interval: float = 0.25) -> Iterator[dict[str, Any]]:
    """Each change of the job's status as it happens; the last item is {"state": "SUCCESS",
    "result": …}. Raises JobFailed when a step fails or time runs out."""
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        now = status(app, ids)
        if now["state"] == "FAILURE":
            raise JobFailed(now["error"])
        if now != last:
            last = now
            yield now
            if now["state"] == "SUCCESS":
                return
        time.sleep(interval)
    raise JobFailed(f"pipeline did not finish within {timeout:.0f} s")
