"""The console's pages without servers: AdminService replaced by a fake that knows one token, so
login, refusals, CSRF, confirmation and expiry are checked on the app alone (the browser test in
tests/test_console.py runs it against the real control plane)."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Gauge, start_http_server
from starlette.testclient import TestClient

from cinesync.settings import Settings
from cinesync.v1 import admin_pb2 as admin
from console.admin import AdminClient, Refused, TokenRefused
from console.app import create_app
from console.monitoring import Monitoring
from launcher.services.process import free_port

TOKEN = "good-token"


class FakeAdmin(AdminClient):
    """Answers like AdminService for one token (``token``); records the calls."""

    def __init__(self) -> None:
        super().__init__("unused:0")
        self.calls: list[str] = []
        self.current = 2
        self.token = TOKEN

    async def call(self, method: str, request: Any, *, token: str) -> Any:
        if token != self.token:
            raise TokenRefused(401, "that token is not accepted by the control plane")
        self.calls.append(method)
        if method == "ListVersions":
            return admin.ListVersionsResponse(versions=[
                admin.ModelVersion(version=v, current=v == self.current, dataset="ml-100k", ndcg_at_10=0.1 * v)
                for v in (1, 2)])
        if method == "Promote":
            previous, self.current = self.current, request.version
            return admin.VersionChange(previous=previous, current=request.version)
        if method == "GetExperimentReport":
            raise Refused(404, f"NOT_FOUND: no experiment {request.name!r}")
        if method == "ListJobs":
            return admin.ListJobsResponse(jobs=[admin.JobProgress(
                job_id="0123456789abcdef", state="PROGRESS", step="train", stage="two_tower", percent=42.0,
                message="train · two_tower · epoch 3/10 · loss 5.3868")])
        if method == "GetFederatedRun":
            return admin.FederatedRun(run_id=request.run_id, state="completed", best_round=2, rounds=[
                admin.FederatedRound(round=r, sampled=3, replied=3 - (r == 2), failed=int(r == 2), rejected=int(r == 1),
                                     rejected_reasons={"norm": 1} if r == 1 else {}, aggregated=True,
                                     validation_ndcg_at_10=0.05 * r, epsilon=0.4 * r, seconds=12.5)
                for r in (1, 2)])
        raise AssertionError(method)


@pytest.fixture()
def app_and_admin(tmp_path: Path) -> tuple[TestClient, FakeAdmin]:
    fake = FakeAdmin()
    settings = Settings(home=tmp_path, console_secret="s3cret", console_session_s=60, metrics_port=free_port())
    return TestClient(create_app(settings, client=fake), base_url="http://console.test"), fake


def _login(client: TestClient) -> str:
    reply = client.post("/login", data={"token": TOKEN, "next": "/versions"})
    assert reply.status_code == 200 and "Model versions" in reply.text
    found = re.search(r'name="csrf" value="([^"]+)"', reply.text)
    assert found
    return found.group(1)


def test_nothing_is_shown_without_a_good_token(app_and_admin: tuple[TestClient, FakeAdmin]) -> None:
    client, fake = app_and_admin
    for path in ("/versions", "/experiments", "/jobs", "/federated", "/monitoring", "/experiments/x"):
        reply = client.get(path)
        assert reply.status_code == 401 and "Admin token" in reply.text and "ml-100k" not in reply.text
    wrong = client.post("/login", data={"token": "guess"})
    assert wrong.status_code == 401 and "not accepted" in wrong.text and "set-cookie" not in wrong.headers
    assert client.post("/versions/rollback", data={}).status_code == 401 and fake.calls == []


def test_actions_need_the_sessions_csrf_token_and_a_confirmation(app_and_admin: tuple[TestClient, FakeAdmin]) -> None:
    client, fake = app_and_admin
    csrf = _login(client)
    confirm = client.get("/confirm/promote?subject=1")
    assert confirm.status_code == 200 and 'action="/versions/1/promote"' in confirm.text and "Promote" not in fake.calls
    for forged in ({}, {"csrf": "forged"}):
        refused = client.post("/versions/1/promote", data=forged)
        assert refused.status_code == 403 and "CSRF" in refused.text
    other_site = client.post("/versions/1/promote", data={"csrf": csrf}, headers={"origin": "http://evil.test"})
    assert other_site.status_code == 403 and "Promote" not in fake.calls
    done = client.post("/versions/1/promote", data={"csrf": csrf}, headers={"origin": "http://console.test"})
    assert done.status_code == 200 and "Version 1 is current (was 2)" in done.text
    assert client.get("/experiments/nope").status_code == 404


def test_a_login_expires_and_a_revoked_token_logs_out(app_and_admin: tuple[TestClient, FakeAdmin],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    client, fake = app_and_admin
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() - 120)  # signed two minutes ago; sessions last 60 s
    _login(client)
    monkeypatch.setattr(time, "time", real)
    assert client.get("/versions").status_code == 401
    _login(client)
    fake.token = "rotated"  # the control plane no longer accepts the session's token
    reply = client.get("/versions")
    assert reply.status_code == 401 and "not accepted" in reply.text
    fake.token = TOKEN
    assert client.get("/versions").status_code == 401  # the session was cleared


def test_monitoring_says_when_prometheus_is_unreachable_and_shows_the_control_planes_figures() -> None:
    registry = CollectorRegistry()
    Gauge("cinesync_quality_catalog_coverage", "coverage", ["version"], registry=registry).labels("3").set(0.25)
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    closed = f"http://127.0.0.1:{free_port()}"
    try:
        figures = asyncio.run(Monitoring(metrics_url=f"http://127.0.0.1:{port}/metrics", prometheus_url=closed,
                                         timeout_s=1).figures())
    finally:
        server.shutdown()
        thread.join()
    assert figures.problem.startswith(f"Prometheus at {closed} is unreachable")
    assert figures.source.startswith("the control plane") and figures.quality == {"3": {"catalog coverage": 0.25}}
    both_away = asyncio.run(Monitoring(metrics_url=f"{closed}/metrics", prometheus_url=closed, timeout_s=1).figures())
    assert "the control plane's metrics at" in both_away.problem and not both_away.quality


def test_a_running_job_refreshes_and_a_federated_run_shows_its_rounds(app_and_admin: tuple[TestClient, FakeAdmin]) -> None:
    client, _ = app_and_admin
    _login(client)
    jobs = client.get("/jobs")
    assert jobs.status_code == 200 and 'http-equiv="refresh"' in jobs.text
    assert "epoch 3/10" in jobs.text and 'value="42.0"' in jobs.text
    run = client.get("/federated/run-1")
    assert run.status_code == 200 and "<svg" in run.text and "norm: 1" in run.text
    assert 'http-equiv="refresh"' not in run.text  # a completed run does not refresh
    rows = re.findall(r"<tr>\s*<th scope=\"row\">(\d+)</th>", run.text)
    assert rows == ["1", "2"]
