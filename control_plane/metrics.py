"""Prometheus metrics of the control plane."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter(
    "cinesync_recommend_requests_total", "Recommend calls by outcome", ["outcome"]
)  # outcome: triton | degraded | cold_start | invalid | unavailable
LATENCY = Histogram(
    "cinesync_recommend_latency_seconds",
    "Recommend latency",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
RANKING_FAILURES = Counter("cinesync_ranking_failures_total", "Triton ranking calls that failed or timed out")
MODEL_VERSION = Gauge("cinesync_model_version", "Version of the serving bundle in use")
