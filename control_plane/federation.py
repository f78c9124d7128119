"""Federated runs from the control plane: start one through Flower's Control API (the FAB of
cinesync.federation, the run's configuration as its run config), report its status and round
history (reconciled with what Flower says of the run, and with the publish job that follows it),
and stop it. One run is open at a time."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

from celery import Celery

from cinesync import bundle as layout
from cinesync.federation import (
    RUN_CONFIG_KEY,
    FederatedRunConfig,
    InvalidRunConfig,
    State,
    all_statuses,
    build_fab,
    new_run_id,
    read_status,
    write_status,
)
from cinesync.settings import Settings

FLOWER_FAILED = ("failed", "stopped")  # Flower's sub-status of a finished run that did not complete


def _call_errors() -> tuple[type[Exception], ...]:
    """What Flower's Control API client raises for a SuperLink that is down or refuses."""
    import httpx

    return (httpx.HTTPError, ValueError)


class RunAlreadyOpen(RuntimeError):
    """A federated run is starting or running; the message names it."""


class UnknownRun(LookupError):
    """No federated run has this id."""


class FederationUnavailable(RuntimeError):
    """Flower is not installed here or no SuperLink answers; the message says which."""


class Federation:
    """The control plane's side of federated runs, on ``settings``' SuperLink and home."""

    def __init__(self, settings: Settings, celery: Celery | None = None) -> None:
        self.settings = settings
        self.celery = celery

    def _address(self) -> str:
        return self.settings.superlink_address or f"{self.settings.host}:{self.settings.superlink_port}"

    def _control(self) -> Any:
        try:
            from flwr.supercore.control.control_http_client import ControlHttpClient
        except ImportError:
            raise FederationUnavailable("Flower is not installed here (pip install 'cinesync[federated]')") from None
        return ControlHttpClient(f"http://{self._address()}", timeout=30.0)

    def _served_run(self) -> str:
        version = layout.current_version(self.settings.serving_dir)
        if version is None:
            raise InvalidRunConfig("no version is served yet: name a base run (base_run) to take the catalog from")
        manifest = json.loads((self.settings.serving_dir / str(version) / layout.MANIFEST).read_text())
        return str(self.settings.runs_dir.resolve() / manifest["run_id"])

    def start(self, config: FederatedRunConfig) -> dict[str, Any]:
        """Open a run of ``config`` (its run id and base run filled in when empty); its first status."""
        open_runs = [s["run_id"] for s in self.statuses() if s.get("state") in State.OPEN]
        if open_runs:
            raise RunAlreadyOpen(f"federated run {open_runs[0]} is still open; stop it or wait for it to end")
        config = dataclasses.replace(config, run_id=config.run_id or new_run_id(),
                                     base_run=config.base_run or self._served_run())
        config.check()
        if not (Path(config.base_run) / "manifest.json").is_file():
            raise InvalidRunConfig(f"base run {config.base_run} is not a finished training run")
        control = self._control()  # FederationUnavailable where Flower is not installed
        from flwr.common.serde import fab_to_proto, user_config_to_proto
        from flwr.proto.control_pb2 import StartRunRequest
        from flwr.supercore.fab import Fab

        status: dict[str, Any] = {"run_id": config.run_id, "flower_run_id": None, "state": State.STARTING,
                  "detail": "asking the SuperLink to start the ServerApp", "config": dataclasses.asdict(config),
                  "rounds": [], "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        write_status(self.settings.home, config.run_id, status)  # before the ServerApp can write its own
        fab, digest = build_fab(config.mode)
        try:
            reply = control.StartRun(StartRunRequest(
                fab=fab_to_proto(Fab(digest, fab, {})),
                override_config=user_config_to_proto({RUN_CONFIG_KEY: config.to_json()})))
        except _call_errors() as error:
            status.update(state=State.FAILED, detail=f"the SuperLink did not start the run: {error}")
            write_status(self.settings.home, config.run_id, status)
            raise FederationUnavailable(f"the SuperLink at {self._address()} did not start the run: {error}") from None
        finally:
            control.close()
        status = read_status(self.settings.home, config.run_id)
        if status.get("flower_run_id") is None:
            status.update(flower_run_id=int(reply.run_id), detail="waiting for the ServerApp")
            write_status(self.settings.home, config.run_id, status)
        return status

    def statuses(self) -> list[dict[str, Any]]:
        """Every run's status, open ones reconciled with Flower, oldest first."""
        return [self._reconciled(s) for s in all_statuses(self.settings.home)]

    def status(self, run_id: str) -> dict[str, Any]:
        try:
            status = read_status(self.settings.home, run_id)
        except (FileNotFoundError, ValueError):
            raise UnknownRun(f"no federated run {run_id!r}") from None
        return self._reconciled(status)

    def _reconciled(self, status: dict[str, Any]) -> dict[str, Any]:
        """``status`` with what the ServerApp could not write itself: a run Flower ended without it
        (its process killed, the SuperLink restarted without it) and the publish job's version."""
        changed = False
        if status.get("state") in State.OPEN and status.get("flower_run_id") is not None:
            flower = self._flower_status(int(status["flower_run_id"]))
            if flower is not None and flower[0] == "finished":
                status = read_status(self.settings.home, status["run_id"])  # the ServerApp may have just finished
                if status.get("state") in State.OPEN:
                    state = State.STOPPED if flower[1] == "stopped" else State.FAILED
                    status.update(state=state, detail=f"Flower ended the run: {flower[1]} {flower[2]}".strip(),
                                  finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
                    changed = True
        job = status.get("publish_job")
        if job and "version" not in status and self.celery is not None:
            result = self.celery.AsyncResult(job)
            if result.state == "SUCCESS":
                status["version"] = int(result.result["version"])
                changed = True
            elif result.state == "FAILURE" and "publish_error" not in status:
                status["publish_error"] = str(result.result)
                changed = True
        if changed:
            write_status(self.settings.home, status["run_id"], status)
        return status

    def _flower_status(self, flower_run_id: int) -> tuple[str, str, str] | None:
        """(status, sub-status, details) Flower holds for the run, or None when no SuperLink answers."""
        try:
            control = self._control()
        except FederationUnavailable:
            return None
        from flwr.proto.control_pb2 import ListRunsRequest

        try:
            runs = control.ListRuns(ListRunsRequest(run_id=flower_run_id)).run_dict
        except _call_errors():  # a SuperLink restarting: nothing to reconcile yet
            return None
        finally:
            control.close()
        run = runs.get(flower_run_id)
        return None if run is None else (run.status.status, run.status.sub_status, run.status.details)

    def stop(self, run_id: str) -> dict[str, Any]:
        """Stop an open run through Flower; its status becomes stopped (a finished run is returned as it is)."""
        status = self.status(run_id)
        if status.get("state") not in State.OPEN or status.get("flower_run_id") is None:
            return status
        control = self._control()
        from flwr.proto.control_pb2 import StopRunRequest

        try:
            control.StopRun(StopRunRequest(run_id=int(status["flower_run_id"])))
        except _call_errors() as error:
            raise FederationUnavailable(f"the SuperLink at {self._address()} did not stop the run: {error}") from None
        finally:
            control.close()
        status.update(state=State.STOPPED, detail="stopped on request", finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        write_status(self.settings.home, run_id, status)
        return status
