"""`cinesync tune`'s side: queue one Celery task per trial of a study's budget (any number of
workers take them) and say each trial as it finishes (cinesync.tuning.watch)."""

from __future__ import annotations

from collections.abc import Callable

from celery import Celery

from cinesync import tuning
from cinesync.settings import Settings


def queue_trials(app: Celery, name: str, count: int) -> list[str]:
    """``count`` trial tasks of study ``name`` on the job queue; their ids."""
    return [app.send_task(tuning.TRIAL, args=(name,)).id for _ in range(count)]


def follow(settings: Settings, name: str, say: Callable[[str], None], *, timeout_s: float, poll_s: float = 2.0) -> None:
    """Say each trial as it finishes, until the budget's trials have all finished."""
    for event in tuning.watch(settings, name, timeout_s=timeout_s, poll_s=poll_s):
        if event["trial"] is None:
            say(f"  {event['done']} of {event['budget']} trials had finished before"
                + (f" · best {event['best']:.4f}" if event["best"] is not None else ""))
            continue
        figure = f"validation ndcg@10 {event['value']:.4f}" if event["value"] is not None else event["detail"]
        say(f"  trial {event['trial']:>3} {event['state']:<8} {figure} · {event['done']}/{event['budget']} done"
            + (f" · best {event['best']:.4f}" if event["best"] is not None else ""))
