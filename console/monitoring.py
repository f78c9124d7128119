"""The online figures the monitoring page shows: from Prometheus' HTTP API when one is configured
and answers (quality and drift gauges, per-variant rates from the recording rules, firing alerts),
else from the control plane's own /metrics (the same gauges, and rates since it started)."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

QUALITY = {
    "cinesync_quality_window_answers": "answers in window",
    "cinesync_quality_catalog_coverage": "catalog coverage",
    "cinesync_quality_mean_popularity": "mean popularity",
    "cinesync_quality_novelty": "novelty",
    "cinesync_quality_cold_start_share": "cold-start share",
    "cinesync_quality_degraded_share": "degraded share",
    "cinesync_quality_mean_history_length": "mean history length",
}
DRIFT = "cinesync_drift_psi"


@dataclass
class Figures:
    """What the page shows, and where it came from (``problem``: why Prometheus was not used)."""

    source: str
    problem: str = ""
    quality: dict[str, dict[str, float]] = field(default_factory=dict)  # version -> figure -> value
    drift: dict[str, dict[str, float]] = field(default_factory=dict)  # version -> feature -> PSI
    rates: list[dict[str, Any]] = field(default_factory=list)  # experiment, variant, exposures, watch/click rate
    alerts: list[dict[str, str]] | None = None  # firing alerts (None: no Prometheus to ask)


class Monitoring:
    """Reads the figures; ``prometheus_url`` may be empty."""

    def __init__(self, *, metrics_url: str, prometheus_url: str, timeout_s: float = 3.0) -> None:
        self.metrics_url = metrics_url
        self.prometheus_url = prometheus_url.rstrip("/")
        self.timeout_s = timeout_s

    async def figures(self) -> Figures:
        if self.prometheus_url:
            try:
                return await self._from_prometheus()
            except (httpx.HTTPError, KeyError, ValueError) as error:
                fallback = await self._from_control_plane()
                unreachable = (f"Prometheus at {self.prometheus_url} is unreachable ({error}): showing the control "
                               "plane's own figures")
                fallback.problem = "; ".join(filter(None, [unreachable, fallback.problem]))
                return fallback
        return await self._from_control_plane()

    async def _query(self, client: httpx.AsyncClient, query: str) -> list[dict[str, Any]]:
        reply = await client.get(f"{self.prometheus_url}/api/v1/query", params={"query": query})
        reply.raise_for_status()
        body = reply.json()
        if body.get("status") != "success":
            raise ValueError(body.get("error", "query failed"))
        return list(body["data"]["result"])

    async def range_query(self, query: str, *, hours: float = 24.0, step_s: int = 900) -> dict[str, tuple[list[float], list[float]]]:
        """``query`` over the last ``hours`` (hours ago, value) per series, named by its labels ({} without Prometheus)."""
        if not self.prometheus_url:
            return {}
        end = time.time()
        async with httpx.AsyncClient(timeout=self.timeout_s) as client:
            reply = await client.get(f"{self.prometheus_url}/api/v1/query_range",
                                     params={"query": query, "start": end - hours * 3600, "end": end, "step": step_s})
            reply.raise_for_status()
        series = {}
        for result in reply.json()["data"]["result"]:
            name = ", ".join(f"{v}" for k, v in sorted(result["metric"].items()) if k != "__name__") or query
            points = [(float(t), float(v)) for t, v in result["values"] if v not in ("NaN", "+Inf", "-Inf")]
            if points:
                series[name] = ([(t - end) / 3600 for t, _ in points], [v for _, v in points])
        return series

    async def _from_prometheus(self) -> Figures:
        figures = Figures(source=f"Prometheus at {self.prometheus_url}")
        rates = {"exposures per second": "cinesync:exposures:rate1h", "watch rate": "cinesync:watch_rate:ratio1h",
                 "click rate": "cinesync:click_rate:ratio1h"}
        queries = [*QUALITY, DRIFT, *rates.values(), 'ALERTS{alertstate="firing"}']
        async with httpx.AsyncClient(timeout=self.timeout_s) as client:
            answers = dict(zip(queries, await asyncio.gather(*(self._query(client, q) for q in queries)), strict=True))
        for name, label in QUALITY.items():
            for sample in answers[name]:
                figures.quality.setdefault(sample["metric"]["version"], {})[label] = float(sample["value"][1])
        for sample in answers[DRIFT]:
            metric = sample["metric"]
            figures.drift.setdefault(metric["version"], {})[metric["feature"]] = float(sample["value"][1])
        by_arm: dict[tuple[str, str], dict[str, Any]] = defaultdict(dict)
        for key, query in rates.items():
            for sample in answers[query]:
                metric = sample["metric"]
                by_arm[(metric.get("experiment", ""), metric.get("variant", ""))][key] = float(sample["value"][1])
        figures.rates = [{"experiment": e, "variant": v, **values} for (e, v), values in sorted(by_arm.items())]
        figures.alerts = [{"name": s["metric"]["alertname"], "severity": s["metric"].get("severity", ""),
                           "labels": ", ".join(f"{k}={v}" for k, v in sorted(s["metric"].items())
                                               if k not in ("__name__", "alertname", "alertstate", "severity"))}
                          for s in answers['ALERTS{alertstate="firing"}']]
        return figures

    async def _from_control_plane(self) -> Figures:
        figures = Figures(source=f"the control plane at {self.metrics_url} (rates since it started)")
        try:
            async with httpx.AsyncClient(timeout=self.timeout_s) as client:
                reply = await client.get(self.metrics_url)
                reply.raise_for_status()
        except httpx.HTTPError as error:
            figures.problem = f"the control plane's metrics at {self.metrics_url} are unreachable ({error})"
            return figures
        totals: dict[tuple[str, str], dict[str, float]] = defaultdict(lambda: defaultdict(float))
        for family in text_string_to_metric_families(reply.text):
            for sample in family.samples:
                labels = sample.labels
                if sample.name in QUALITY:
                    figures.quality.setdefault(labels["version"], {})[QUALITY[sample.name]] = sample.value
                elif sample.name == DRIFT:
                    figures.drift.setdefault(labels["version"], {})[labels["feature"]] = sample.value
                elif sample.name == "cinesync_exposures_total":
                    totals[(labels["experiment"], labels["variant"])]["exposures"] += sample.value
                elif sample.name == "cinesync_feedback_events_total" and labels["kind"] in ("watch", "click"):
                    totals[(labels["experiment"], labels["variant"])][labels["kind"]] += sample.value
        figures.rates = [{"experiment": e, "variant": v, "exposures": t["exposures"],
                          "watch rate": t["watch"] / t["exposures"] if t["exposures"] else 0.0,
                          "click rate": t["click"] / t["exposures"] if t["exposures"] else 0.0}
                         for (e, v), t in sorted(totals.items())]
        return figures
