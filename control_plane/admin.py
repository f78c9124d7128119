"""The AdminService RPCs (model versions, promotion, experiments and their reports, training jobs,
federated runs) and the bearer-token check every admin call passes."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import grpc
from celery import Celery

from cinesync import bundle as layout
from cinesync import jobs, tuning, versions
from cinesync.bundle import current_version
from cinesync.federation import FederatedRunConfig, InvalidRunConfig
from cinesync.settings import Settings
from cinesync.v1 import admin_pb2 as admin
from cinesync.v1 import admin_pb2_grpc as admin_grpc
from control_plane.experiments.definition import NAME, Experiment, InvalidExperiment, check
from control_plane.experiments.report import arms, build_report
from control_plane.experiments.router import ExperimentRouter
from control_plane.federation import Federation, FederationUnavailable, RunAlreadyOpen, UnknownRun
from control_plane.jobs import JobRegistry
from control_plane.validation import shorten

ADMIN_SERVICE = admin.DESCRIPTOR.services_by_name["AdminService"].full_name
STUDY_START_TIMEOUT_S = 300  # for a worker to take a new study's checks (and later its last trial's files)


async def _abort(context: grpc.aio.ServicerContext, code: grpc.StatusCode, message: str) -> NoReturn:
    await context.abort(code, shorten(message))
    raise AssertionError("ServicerContext.abort returns only by raising")


def _refuse(code: grpc.StatusCode, message: str) -> grpc.RpcMethodHandler:
    async def refuse(request: Any, context: grpc.aio.ServicerContext) -> None:
        await context.abort(code, message)

    return grpc.unary_unary_rpc_method_handler(refuse)


class AdminAuth(grpc.aio.ServerInterceptor):  # type: ignore[misc]  # untyped base
    """Admin calls need 'authorization: Bearer <token>' with one of ``tokens``: UNAUTHENTICATED
    without it, PERMISSION_DENIED with another. Other services pass untouched."""

    def __init__(self, tokens: Sequence[str]) -> None:
        self.tokens = [t.encode() for t in tokens if t]

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        if not details.method.startswith(f"/{ADMIN_SERVICE}/"):
            return await continuation(details)
        header = dict(details.invocation_metadata or ()).get("authorization", "")
        scheme, _, token = str(header).partition(" ")
        if scheme.lower() != "bearer" or not token:
            return _refuse(grpc.StatusCode.UNAUTHENTICATED, "admin calls need metadata 'authorization: Bearer <token>'")
        if not any(hmac.compare_digest(token.encode(), known) for known in self.tokens):
            return _refuse(grpc.StatusCode.PERMISSION_DENIED, "that token may not call the admin service")
        return await continuation(details)


def catalog_digest(serving_dir: Path, version: int) -> str:
    """What must agree for one version's retrieval to be ranked by another's ensemble: items and users."""
    folder = Path(serving_dir) / str(version)
    return hashlib.sha256((folder / layout.ITEMS).read_bytes() + (folder / layout.USERS).read_bytes()).hexdigest()


def job_progress(job_id: str, update: dict[str, Any]) -> admin.JobProgress:
    """A job's status (cinesync.jobs.status) as the admin API streams it."""
    result = update.get("result")
    return admin.JobProgress(
        job_id=job_id, state=update["state"], step=str(update.get("step", "")), stage=str(update.get("stage", "")),
        percent=float(update.get("percent", 100.0 if update["state"] == "SUCCESS" else 0.0)),
        message=update.get("error") or (jobs.describe(update) if update["state"] == jobs.PROGRESS else ""),
        result_json=json.dumps(result) if result is not None else "",
    )


OPTIONAL_RUN_FIELDS = ("rounds", "min_clients", "fraction_train", "local_epochs", "local_batch_size", "dp_noise_multiplier",
                       "dp_clipping_norm", "dp_delta", "dp_max_epsilon", "publish_on_budget", "max_update_norm",
                       "publish", "round_timeout_s", "seed")


def federated_config(request: admin.FederatedRunRequest) -> FederatedRunConfig:
    """The request's settings over FederatedRunConfig's defaults."""
    values: dict[str, Any] = {name: getattr(request, name) for name in OPTIONAL_RUN_FIELDS if request.HasField(name)}
    values.update({name: getattr(request, name) for name in ("kind", "strategy", "start_from", "base_run", "mode")
                   if getattr(request, name)})
    return FederatedRunConfig(**values, strategy_params=dict(request.strategy_params))


def federated_run(status: dict[str, Any]) -> admin.FederatedRun:
    """A run's status file as the admin API returns it."""
    rounds = [admin.FederatedRound(
        round=r["round"], seconds=r["seconds"], sampled=r["sampled"], replied=r["replied"], failed=r["failed"],
        rejected=r["rejected"], rejected_reasons=r["rejected_reasons"], aggregated=r["aggregated"],
        bytes_sent=r["bytes_sent"], bytes_received=r["bytes_received"],
        validation_ndcg_at_10=r["validation"].get("ndcg@10", 0.0), epsilon=r.get("epsilon") or 0.0,
    ) for r in status.get("rounds", [])]
    return admin.FederatedRun(
        run_id=status["run_id"], state=status["state"], detail=status.get("detail", ""), rounds=rounds,
        best_round=status.get("best_round") or 0, test_ndcg_at_10=(status.get("test") or {}).get("ndcg@10", 0.0),
        epsilon=status.get("epsilon") or 0.0, version=status.get("version") or 0, status_json=json.dumps(status),
    )


class AdminService(admin_grpc.AdminServiceServicer):  # type: ignore[misc]  # untyped generated base
    def __init__(
        self, *, repository: Path, serving_dir: Path, router: ExperimentRouter, celery: Celery | None = None,
        registry: JobRegistry | None = None, federation: Federation | None = None, settings: Settings | None = None,
    ) -> None:
        self.federation = federation
        self.settings = settings  # where tuning studies live
        self.repository = Path(repository)
        self.serving_dir = Path(serving_dir)
        self.router = router
        self.celery = celery
        self.registry = registry

    async def StartTraining(
        self, request: admin.TrainingRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[admin.JobProgress]:
        if self.celery is None or self.registry is None:
            await _abort(context, grpc.StatusCode.FAILED_PRECONDITION, "this control plane cannot reach Celery")
        serve = request.serve or "all"
        try:
            if not request.data:
                raise ValueError("data is required: 'synthetic[:opts]' or a folder the workers can read")
            options = jobs.pipeline_options(request.options.items())
            signature = jobs.pipeline(self.celery, request.data, options, publish=request.publish, serve=serve)
        except ValueError as error:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(error))
        submitted = await asyncio.to_thread(signature.apply_async)
        task_ids = jobs.chain_ids(submitted)
        job_id = task_ids[-1]
        await self.registry.add(job_id, task_ids, {"data": request.data, "options": dict(request.options),
                                                   "publish": request.publish, "serve": serve})
        updates = jobs.progress(self.celery, task_ids)
        while True:
            try:
                update = await asyncio.to_thread(next, updates, None)
            except jobs.JobFailed as error:
                yield job_progress(job_id, {"state": "FAILURE", "error": str(error)})
                return
            if update is None:
                return
            yield job_progress(job_id, update)

    async def StartTuning(
        self, request: admin.TuningRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[admin.TuningProgress]:
        if self.celery is None or self.settings is None:
            await _abort(context, grpc.StatusCode.FAILED_PRECONDITION, "this control plane cannot reach Celery")
        settings = self.settings
        if not tuning.NAME.match(request.name) or not request.data or not request.kind or request.trials < 1:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT,
                         "a study needs a name of 1-64 characters of [A-Za-z0-9_.-], data, a kind and at least 1 trial")
        target = {"data": request.data, "kind": request.kind, "split": request.split or "auto",
                  "history_length": request.history_length, "seed": request.seed,
                  "options": dict(request.options)}
        submitted = await asyncio.to_thread(self.celery.send_task, tuning.STUDY,
                                            args=(request.name, target, dict(request.space), request.trials))
        try:
            await asyncio.to_thread(submitted.get, timeout=STUDY_START_TIMEOUT_S)
        except Exception as error:  # noqa: BLE001  # the worker's refusal (unknown kind or field, another space …)
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"study {request.name!r} refused: {error}")
        events = tuning.watch(settings, request.name, timeout_s=7 * 24 * 3600.0, poll_s=1.0)
        while (event := await asyncio.to_thread(next, events, None)) is not None:
            yield admin.TuningProgress(
                study=request.name, done=event["done"], budget=event["budget"],
                trial=-1 if event["trial"] is None else event["trial"], state=event.get("state", ""),
                value=event.get("value") or 0.0, detail=event.get("detail", ""), best=event["best"] or 0.0)
        config = tuning.configs_dir(settings) / f"{request.name}.json"
        for _ in range(STUDY_START_TIMEOUT_S):  # the last trial's worker writes it
            if config.is_file():
                break
            await asyncio.sleep(1.0)
        yield admin.TuningProgress(study=request.name, trial=-1, config=str(config) if config.is_file() else "")

    async def ListJobs(self, request: admin.ListJobsRequest, context: grpc.aio.ServicerContext) -> Any:
        if self.celery is None or self.registry is None:
            await _abort(context, grpc.StatusCode.FAILED_PRECONDITION, "this control plane cannot reach Celery")
        listed = []
        for entry in await self.registry.recent():
            now = await asyncio.to_thread(jobs.status, self.celery, entry["task_ids"])
            listed.append(job_progress(entry["job_id"], now))
        return admin.ListJobsResponse(jobs=listed)

    def _versions(self) -> list[admin.ModelVersion]:
        whole = versions.whole_versions(self.repository, self.serving_dir)
        current, referenced = current_version(self.serving_dir), versions.referenced_versions(self.serving_dir)
        listed = []
        for version in whole:
            manifest = json.loads((self.serving_dir / str(version) / layout.MANIFEST).read_text())
            listed.append(admin.ModelVersion(
                version=version, current=version == current, published=manifest.get("published", ""),
                dataset=str(manifest.get("dataset", "")), fitted_on=manifest.get("fitted_on", ""),
                ndcg_at_10=(manifest.get("served_metrics") or {}).get("ndcg@10", 0.0),
                run_id=manifest.get("run_id", ""),
                experiments=[h.removeprefix("experiment-") for h in referenced.get(version, [])],
            ))
        return listed

    async def ListVersions(self, request: admin.ListVersionsRequest, context: grpc.aio.ServicerContext) -> Any:
        return admin.ListVersionsResponse(versions=await asyncio.to_thread(self._versions))

    async def Promote(self, request: admin.PromoteRequest, context: grpc.aio.ServicerContext) -> Any:
        try:
            previous = await asyncio.to_thread(versions.promote, self.repository, self.serving_dir, request.version)
        except versions.UnknownVersion as error:
            await _abort(context, grpc.StatusCode.NOT_FOUND, str(error))
        return admin.VersionChange(previous=previous or 0, current=request.version)

    async def Rollback(self, request: admin.RollbackRequest, context: grpc.aio.ServicerContext) -> Any:
        try:
            previous, current = await asyncio.to_thread(versions.rollback, self.repository, self.serving_dir)
        except versions.UnknownVersion as error:
            await _abort(context, grpc.StatusCode.FAILED_PRECONDITION, str(error))
        return admin.VersionChange(previous=previous or 0, current=current)

    def _check_and_reference(self, experiment: Experiment) -> None:
        """Check ``experiment`` against the published versions and record the versions it uses, under
        the publishing lock, so retention cannot delete a version between the check and the record."""
        with versions.publishing_lock(self.serving_dir):
            whole = set(versions.whole_versions(self.repository, self.serving_dir))
            if not experiment.stopped:
                digests = {v: catalog_digest(self.serving_dir, v) for v in experiment.versions() & whole}
                check(experiment, whole_versions=whole, compatible=digests)
            versions.set_references(self.serving_dir, f"experiment-{experiment.name}",
                                    () if experiment.stopped else experiment.versions())

    async def _store(self, experiment: Experiment, context: grpc.aio.ServicerContext) -> admin.Experiment:
        try:
            await asyncio.to_thread(self._check_and_reference, experiment)
        except InvalidExperiment as error:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(error))
        await self.router.store.save(experiment)
        await self.router.refresh()
        return experiment.to_proto()

    async def _existing(self, name: str, context: grpc.aio.ServicerContext) -> Experiment:
        experiment = await self.router.store.get(name)
        if experiment is None:
            known = [e.name for e in await self.router.store.all()]
            await _abort(context, grpc.StatusCode.NOT_FOUND, f"no experiment {name!r}; known: {known or 'none'}")
        return experiment

    async def CreateExperiment(self, request: admin.Experiment, context: grpc.aio.ServicerContext) -> Any:
        experiment = Experiment.from_proto(request)
        if NAME.match(experiment.name) and await self.router.store.get(experiment.name) is not None:
            await _abort(context, grpc.StatusCode.ALREADY_EXISTS, f"experiment {experiment.name!r} exists; update it")
        return await self._store(experiment, context)

    async def UpdateExperiment(self, request: admin.Experiment, context: grpc.aio.ServicerContext) -> Any:
        await self._existing(request.name, context)
        return await self._store(Experiment.from_proto(request), context)

    async def StopExperiment(self, request: admin.ExperimentRequest, context: grpc.aio.ServicerContext) -> Any:
        experiment = await self._existing(request.name, context)
        return await self._store(Experiment.from_json({**experiment.to_json(), "stopped": True}), context)

    async def ListExperiments(self, request: admin.ListExperimentsRequest, context: grpc.aio.ServicerContext) -> Any:
        return admin.ListExperimentsResponse(experiments=[e.to_proto() for e in await self.router.store.all()])

    async def GetExperimentReport(self, request: admin.ExperimentRequest, context: grpc.aio.ServicerContext) -> Any:
        experiment = await self._existing(request.name, context)
        sums = {name: await self.router.store.sums(experiment.name, name) for name, _ in arms(experiment)}
        return build_report(experiment, sums, await self.router.store.unmatched())

    async def _federated(self, context: grpc.aio.ServicerContext, call: Callable[[Federation], dict[str, Any]]) -> Any:
        """``call`` on the federation in a thread, its errors as status codes, its status as a FederatedRun."""
        if self.federation is None:
            await _abort(context, grpc.StatusCode.FAILED_PRECONDITION, "this control plane runs no federated rounds")
        federation = self.federation
        try:
            return federated_run(await asyncio.to_thread(call, federation))
        except InvalidRunConfig as error:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(error))
        except RunAlreadyOpen as error:
            await _abort(context, grpc.StatusCode.FAILED_PRECONDITION, str(error))
        except UnknownRun as error:
            await _abort(context, grpc.StatusCode.NOT_FOUND, str(error))
        except FederationUnavailable as error:
            await _abort(context, grpc.StatusCode.UNAVAILABLE, str(error))

    async def StartFederatedRun(self, request: admin.FederatedRunRequest, context: grpc.aio.ServicerContext) -> Any:
        try:
            config = federated_config(request)
        except TypeError as error:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(error))
        return await self._federated(context, lambda federation: federation.start(config))

    async def GetFederatedRun(self, request: admin.FederatedRunId, context: grpc.aio.ServicerContext) -> Any:
        return await self._federated(context, lambda federation: federation.status(request.run_id))

    async def StopFederatedRun(self, request: admin.FederatedRunId, context: grpc.aio.ServicerContext) -> Any:
        return await self._federated(context, lambda federation: federation.stop(request.run_id))

    async def ListFederatedRuns(self, request: admin.ListFederatedRunsRequest, context: grpc.aio.ServicerContext) -> Any:
        if self.federation is None:
            await _abort(context, grpc.StatusCode.FAILED_PRECONDITION, "this control plane runs no federated rounds")
        statuses = await asyncio.to_thread(self.federation.statuses)
        return admin.ListFederatedRunsResponse(runs=[federated_run(status) for status in statuses])
