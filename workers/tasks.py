"""Celery tasks of the training pipeline; each passes a JSON dict to the next and reports progress."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from celery import Task, chain
from celery.canvas import Signature

from cinesync.settings import get_settings
from workers.celery_app import app

PROGRESS = "PROGRESS"


def _report(task: Task, step: str, **meta: Any) -> None:
    if task.request.id:  # also callable directly, outside a worker
        task.update_state(state=PROGRESS, meta={"step": step, **meta})


@app.task(bind=True, name="cinesync.train")
def train(self: Task, data: str, config: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train the two-tower and the ranker on ``data``; returns {'run_dir': ...}."""
    from recsys.pipeline import train as train_models
    from recsys.training import TrainConfig

    settings = get_settings()
    torch.set_num_threads(settings.torch_threads)
    train_config = TrainConfig(**(config or {}))
    stages = {"retrieval": train_config.retrieval_epochs, "ranker": train_config.ranker_epochs}
    total = sum(stages.values())

    def progress(stage: str, epoch: int, epochs: int, loss: float) -> None:
        done = epoch + (stages["retrieval"] if stage == "ranker" else 0)
        _report(self, "train", stage=stage, epoch=epoch, epochs=epochs, loss=round(loss, 5),
                percent=round(100 * done / total, 1))

    _report(self, "train", stage="loading data", percent=0.0)
    run_dir = train_models(data, settings.runs_dir, train_config, progress)
    return {"run_dir": str(run_dir), "data": data}


@app.task(bind=True, name="cinesync.evaluate")
def evaluate(self: Task, previous: dict[str, Any]) -> dict[str, Any]:
    """Full-ranking Recall/NDCG/MRR@10, saved as metrics.json in the run folder."""
    from recsys.pipeline import evaluate as evaluate_run

    torch.set_num_threads(get_settings().torch_threads)
    _report(self, "evaluate", percent=0.0)
    return {**previous, "metrics": evaluate_run(Path(previous["run_dir"]))}


@app.task(bind=True, name="cinesync.export")
def export(self: Task, previous: dict[str, Any]) -> dict[str, Any]:
    """ONNX export of both towers and the ranker, with parity against PyTorch."""
    from dataclasses import asdict

    from exporters.onnx_export import export_run
    from recsys.run import load_run

    _report(self, "export", percent=0.0)
    run_dir = Path(previous["run_dir"])
    exported = export_run(load_run(run_dir), run_dir / "onnx")
    return {**previous, "export_dir": str(run_dir / "onnx"), "onnx": [asdict(m) for m in exported]}


@app.task(bind=True, name="cinesync.publish")
def publish(self: Task, previous: dict[str, Any]) -> dict[str, Any]:
    """New Triton model version plus serving bundle; the control plane picks it up."""
    from exporters.publish import publish as publish_run
    from recsys.run import load_run

    settings = get_settings()
    _report(self, "publish", percent=0.0)
    version = publish_run(
        load_run(Path(previous["run_dir"])),
        Path(previous["export_dir"]),
        repository=settings.model_repository,
        serving_dir=settings.serving_dir,
        target=settings.triton_target,
    )
    return {**previous, "version": version}


def training_pipeline(data: str, config: dict[str, Any] | None = None, *, publish_model: bool = True) -> Signature:
    """train → evaluate (→ export → publish) as one Celery chain."""
    steps = [train.s(data, config), evaluate.s()]
    if publish_model:
        steps += [export.s(), publish.s()]
    return chain(*steps)
