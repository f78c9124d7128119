"""The console's pages and actions (Starlette, Jinja2 templates, no client-side code).

Nothing is shown without an admin token: the login form checks it against the control plane
(AdminService answers only to a configured token) and keeps it in a signed, expiring, same-site
session cookie; every page calls AdminService with it, so a revoked token logs the operator out at
the next page. Actions are POSTed forms carrying the session's CSRF token (and, where the browser
sends one, an Origin of this console); promote, roll back and stop are confirmed on a page of their
own first.
"""

from __future__ import annotations

import hmac
import math
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.datastructures import FormData
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from cinesync.settings import Settings
from cinesync.v1 import admin_pb2 as admin
from console.admin import AdminClient, Refused, TokenRefused
from console.charts import Interval, forest_plot, line_chart
from console.monitoring import Monitoring

HERE = Path(__file__).resolve().parent
METRIC_NAMES = {"watch_rate": "watch rate (watched answers / answers)", "click_rate": "click rate (clicked answers / answers)",
                "watcher_share": "share of users who watched", "watches_per_user": "watched answers per user"}
VARIANT_ROWS = 5
TREND_HOURS = 24.0
EARLY_USERS = 100  # fewer users in an arm: the report says its estimates are early
Handler = Callable[[Request], Awaitable[Response]]


class Console:
    """The pages; ``client`` reaches AdminService, ``monitoring`` the online figures."""

    def __init__(self, settings: Settings, *, client: AdminClient | None = None) -> None:
        self.settings = settings
        self.client = client or AdminClient(settings.console_control_plane or f"{settings.host}:{settings.grpc_port}")
        self.monitoring = Monitoring(
            metrics_url=settings.control_plane_metrics_url or f"http://{settings.host}:{settings.metrics_port}/metrics",
            prometheus_url=settings.prometheus_url)
        self.templates = Jinja2Templates(directory=HERE / "templates")
        self.templates.env.filters["pct"] = lambda value: "-" if value is None or (
            isinstance(value, float) and math.isnan(value)) else f"{100 * value:.2f} %"
        self.templates.env.filters["num"] = lambda value, digits=4: "-" if value is None or (
            isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"

    # --- rendering and the session --------------------------------------------------------------

    def page(self, request: Request, template: str, status: int = 200, **context: Any) -> Response:
        started = request.scope.get("console.started", time.perf_counter())
        response = self.templates.TemplateResponse(request, template, {
            "logged_in": "token" in request.session, "csrf": request.session.get("csrf", ""), **context,
        }, status_code=status)
        response.headers["Server-Timing"] = f"page;dur={1000 * (time.perf_counter() - started):.1f}"
        response.headers["Cache-Control"] = "no-store"
        return response

    def login_page(self, request: Request, message: str = "", status: int = 401) -> Response:
        return self.page(request, "login.html", status, message=message, next=request.url.path)

    def guarded(self, handler: Handler) -> Handler:
        """``handler`` for a logged-in operator: the login form (401) without a session, a refused
        token logs out, other refusals are an error page with their status."""

        async def run(request: Request) -> Response:
            request.scope["console.started"] = time.perf_counter()
            if "token" not in request.session:
                return self.login_page(request, "Log in with an admin token to see this page.")
            try:
                if request.method == "POST":
                    await self.checked_form(request)
                return await handler(request)
            except TokenRefused as refused:
                request.session.clear()
                return self.login_page(request, refused.message)
            except Refused as refused:
                return self.page(request, "error.html", refused.status, message=refused.message)

        return run

    async def checked_form(self, request: Request) -> FormData:
        """The POSTed form, once its CSRF token (and Origin, when sent) are this session's."""
        form = await request.form()
        origin = request.headers.get("origin")
        expected = f"{request.url.scheme}://{request.url.netloc}"
        sent = str(form.get("csrf", ""))
        if not sent or not hmac.compare_digest(sent, request.session.get("csrf", "")) or (origin and origin != expected):
            raise Refused(403, "refused: that form did not come from this console's session (CSRF check)")
        request.scope["console.form"] = form
        return form

    async def call(self, request: Request, method: str, message: Any) -> Any:
        return await self.client.call(method, message, token=request.session["token"])

    # --- login ----------------------------------------------------------------------------------

    async def login(self, request: Request) -> Response:
        if request.method == "GET":
            return self.login_page(request, status=200)
        form = await request.form()
        token = str(form.get("token", "")).strip()
        if not token:
            return self.login_page(request, "Enter an admin token.")
        try:
            await self.client.call("ListVersions", admin.ListVersionsRequest(), token=token)
        except TokenRefused as refused:
            return self.login_page(request, refused.message)
        except Refused as refused:
            return self.page(request, "error.html", refused.status, message=refused.message)
        request.session.clear()
        request.session.update({"token": token, "csrf": secrets.token_urlsafe(24), "since": int(time.time())})
        target = str(form.get("next", "/versions"))
        return RedirectResponse(target if target.startswith("/") and not target.startswith("//") else "/versions", 303)

    async def logout(self, request: Request) -> Response:
        request.session.clear()
        return RedirectResponse("/login", 303)

    # --- versions -------------------------------------------------------------------------------

    async def versions(self, request: Request) -> Response:
        listed = await self.call(request, "ListVersions", admin.ListVersionsRequest())
        return self.page(request, "versions.html", versions=listed.versions)

    async def confirm(self, request: Request) -> Response:
        """The confirmation page of an action: what it does, and the form that does it."""
        action = request.path_params["action"]
        subject = request.query_params.get("subject", "")
        what = {
            "promote": (f"Promote version {subject}: every request outside experiments is served by it.",
                        f"/versions/{subject}/promote", "/versions"),
            "rollback": (("Roll back: the newest retained version older than the current one serves every request "
                          "outside experiments."), "/versions/rollback", "/versions"),
            "stop": (f"Stop experiment {subject}: its users are served the current version again.",
                     f"/experiments/{subject}/stop", f"/experiments/{subject}"),
        }.get(action)
        if what is None or (action != "rollback" and not subject):
            raise Refused(404, f"nothing to confirm: {action!r}")
        return self.page(request, "confirm.html", action=action, description=what[0], target=what[1], back=what[2])

    async def promote(self, request: Request) -> Response:
        change = await self.call(request, "Promote", admin.PromoteRequest(version=int(request.path_params["version"])))
        return self.page(request, "done.html", message=f"Version {change.current} is current (was {change.previous}).",
                         back="/versions")

    async def rollback(self, request: Request) -> Response:
        change = await self.call(request, "Rollback", admin.RollbackRequest())
        return self.page(request, "done.html", message=f"Rolled back: version {change.current} is current "
                         f"(was {change.previous}).", back="/versions")

    # --- experiments ----------------------------------------------------------------------------

    async def experiments(self, request: Request) -> Response:
        listed = await self.call(request, "ListExperiments", admin.ListExperimentsRequest())
        return self.page(request, "experiments.html", experiments=listed.experiments)

    async def new_experiment(self, request: Request, *, problem: str = "", form: dict[str, str] | None = None,
                             status: int = 200) -> Response:
        listed = await self.call(request, "ListVersions", admin.ListVersionsRequest())
        return self.page(request, "experiment_new.html", status, versions=listed.versions, rows=range(VARIANT_ROWS),
                         problem=problem, form=form or {})

    async def create_experiment(self, request: Request) -> Response:
        form = {key: str(value) for key, value in request.scope["console.form"].items()}
        try:
            variants = [admin.Variant(name=form[f"variant_{n}"].strip(), weight=float(form[f"weight_{n}"]),
                                      retrieval_version=int(form[f"retrieval_{n}"]),
                                      ranking_version=int(form[f"ranking_{n}"]))
                        for n in range(VARIANT_ROWS) if form.get(f"variant_{n}", "").strip()]
            experiment = admin.Experiment(
                name=form.get("name", "").strip(), salt=form.get("salt", "").strip(),
                holdout=float(form.get("holdout") or 0), analysis=form.get("analysis", "fixed"),
                covariate_window_days=float(form.get("covariate_window_days") or 0), variants=variants)
        except (KeyError, ValueError) as error:
            return await self.new_experiment(request, problem=f"the form has a value that is not a number: {error}",
                                             form=form, status=400)
        try:
            await self.call(request, "CreateExperiment", experiment)
        except TokenRefused:
            raise
        except Refused as refused:
            return await self.new_experiment(request, problem=refused.message, form=form, status=refused.status)
        return RedirectResponse(f"/experiments/{experiment.name}", 303)

    async def stop_experiment(self, request: Request) -> Response:
        stopped = await self.call(request, "StopExperiment", admin.ExperimentRequest(name=request.path_params["name"]))
        return self.page(request, "done.html", message=f"Experiment {stopped.name} is stopped.",
                         back=f"/experiments/{stopped.name}")

    async def experiment(self, request: Request) -> Response:
        name = request.path_params["name"]
        report = await self.call(request, "GetExperimentReport", admin.ExperimentRequest(name=name))
        listed = await self.call(request, "ListExperiments", admin.ListExperimentsRequest())
        definition = next((e for e in listed.experiments if e.name == name), None)
        metric = request.query_params.get("metric", "watch_rate")
        if metric not in METRIC_NAMES:
            raise Refused(404, f"no metric {metric!r}; the report has {', '.join(METRIC_NAMES)}")
        show_cuped = request.query_params.get("cuped", "on") == "on" and report.covariate_window_days > 0
        rows = _metric_rows(report, metric)
        plot = ""
        if rows and len(report.variants) > 1 and not report.note:
            treated = [row for row in rows if row["unadjusted"]]
            plot = forest_plot(METRIC_NAMES[metric], [_interval(r["variant"], r["unadjusted"]) for r in treated],
                               [_interval(r["variant"], r["cuped"]) for r in treated] if show_cuped else ())
        flags = _health_flags(report)
        try:
            over_time = await self.monitoring.range_query(
                f'cinesync:{metric}:ratio1h{{experiment="{name}"}}', hours=TREND_HOURS) \
                if metric in ("watch_rate", "click_rate") else {}
        except (httpx.HTTPError, KeyError, ValueError) as error:  # the page still shows the report
            over_time, flags = {}, [*flags, f"rates over time unavailable: Prometheus did not answer ({error})"]
        trend = line_chart(f"{METRIC_NAMES[metric]}, hourly rate", over_time, x_label="hours from now",
                           y_label=metric, x_limits=(-TREND_HOURS, 0.5)) if over_time else ""
        return self.page(request, "experiment.html", report=report, definition=definition, metric=metric,
                         metrics=METRIC_NAMES, rows=rows, plot=plot, cuped=show_cuped, flags=flags, trend=trend,
                         prometheus=bool(self.settings.prometheus_url))

    # --- jobs, federated runs, monitoring -------------------------------------------------------

    async def jobs(self, request: Request) -> Response:
        listed = await self.call(request, "ListJobs", admin.ListJobsRequest())
        running = any(job.state in ("PENDING", "PROGRESS") for job in listed.jobs)
        return self.page(request, "jobs.html", jobs=listed.jobs, refresh=running)

    async def federated(self, request: Request) -> Response:
        listed = await self.call(request, "ListFederatedRuns", admin.ListFederatedRunsRequest())
        return self.page(request, "federated.html", runs=listed.runs,
                         refresh=any(run.state in ("starting", "running") for run in listed.runs))

    async def federated_run(self, request: Request) -> Response:
        run = await self.call(request, "GetFederatedRun", admin.FederatedRunId(run_id=request.path_params["run_id"]))
        rounds = list(run.rounds)
        plot = line_chart("validation NDCG@10 per round", {"federated": (
            [r.round for r in rounds], [r.validation_ndcg_at_10 for r in rounds])}, x_label="round",
            y_label="NDCG@10") if rounds else ""
        return self.page(request, "federated_run.html", run=run, rounds=rounds, plot=plot,
                         refresh=run.state in ("starting", "running"))

    async def monitoring_page(self, request: Request) -> Response:
        await self.call(request, "ListVersions", admin.ListVersionsRequest())  # the token is still good
        figures = await self.monitoring.figures()
        return self.page(request, "monitoring.html", figures=figures, thresholds=(0.1, 0.2))

    async def home(self, request: Request) -> Response:
        return RedirectResponse("/versions", 303)

    def routes(self) -> list[Route | Mount]:
        g = self.guarded
        return [
            Route("/", g(self.home)),
            Route("/login", self.login, methods=["GET", "POST"]),
            Route("/logout", g(self.logout), methods=["POST"]),
            Route("/healthz", lambda request: PlainTextResponse("ok")),
            Route("/versions", g(self.versions)),
            Route("/versions/rollback", g(self.rollback), methods=["POST"]),
            Route("/versions/{version:int}/promote", g(self.promote), methods=["POST"]),
            Route("/confirm/{action}", g(self.confirm)),
            Route("/experiments", g(self.experiments)),
            Route("/experiments", g(self.create_experiment), methods=["POST"]),
            Route("/experiments/new", g(self.new_experiment)),
            Route("/experiments/{name}", g(self.experiment)),
            Route("/experiments/{name}/stop", g(self.stop_experiment), methods=["POST"]),
            Route("/jobs", g(self.jobs)),
            Route("/federated", g(self.federated)),
            Route("/federated/{run_id}", g(self.federated_run)),
            Route("/monitoring", g(self.monitoring_page)),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ]


def _interval(label: str, comparison: admin.Comparison) -> Interval:
    return Interval(label, comparison.difference, comparison.low, comparison.high, comparison.significant)


def _metric_rows(report: admin.ExperimentReport, metric: str) -> list[dict[str, Any]]:
    """Per arm: users, the metric's value and, but for the control, both comparisons."""
    rows = []
    for variant in report.variants:
        found = next((m for m in variant.metrics if m.metric == metric), None)
        rows.append({"variant": variant.variant, "users": variant.users, "exposures": variant.exposures,
                     "value": found.value if found else None, "adjusted": found.adjusted_value if found else None,
                     "unadjusted": found.unadjusted if found and found.HasField("unadjusted") else None,
                     "cuped": found.cuped if found and found.HasField("cuped") else None,
                     "reduction": found.variance_reduction if found else None})
    return rows


def _health_flags(report: admin.ExperimentReport) -> list[str]:
    """What an operator should know before reading the numbers."""
    flags = []
    if report.note:
        flags.append(f"No comparisons yet: {report.note}.")
    if report.sample_ratio_mismatch:
        flags.append(f"Sample ratio mismatch (p = {report.srm_p_value:.2g}): users are not split as configured; "
                     "do not trust the comparisons until the cause is found.")
    early = [v.variant for v in report.variants if 0 < v.users < EARLY_USERS]
    if early:
        flags.append(f"Early: {', '.join(early)} have fewer than {EARLY_USERS} users.")
    if report.unmatched_feedback:
        flags.append(f"{report.unmatched_feedback} feedback records matched no answer (unknown request ids).")
    if report.analysis != "sequential" and not report.note:
        flags.append("Fixed-horizon analysis: read it once, at the sample you planned; for looks along the way "
                     "create the experiment with the sequential analysis.")
    return flags


def create_app(settings: Settings, *, client: AdminClient | None = None) -> Starlette:
    """The console for the control plane ``settings`` name."""
    console = Console(settings, client=client)
    secret = settings.console_secret or secrets.token_urlsafe(32)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await console.client.close()

    return Starlette(
        routes=console.routes(),
        middleware=[Middleware(SessionMiddleware, secret_key=secret, session_cookie="cinesync_console",
                               max_age=settings.console_session_s, same_site="strict", https_only=False)],
        lifespan=lifespan,
    )
