"""Prometheus metrics of the control plane."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
REQUESTS = Counter(
    "cinesync_recommend_requests_total", "Recommend calls by outcome", ["outcome"]
)  # outcome: triton | retrieval | degraded | cold_start | invalid | unavailable
LATENCY = Histogram("cinesync_recommend_latency_seconds", "Recommend latency", buckets=BUCKETS)
STAGE_LATENCY = Histogram(
    "cinesync_stage_latency_seconds", "Time per Recommend stage (retrieval, ranking, total) and variant",
    ["stage", "variant"], buckets=BUCKETS,
)
ERRORS = Counter("cinesync_rpc_errors_total", "RPCs that ended with an error status", ["method", "code"])
TRITON_LATENCY = Histogram("cinesync_triton_call_seconds", "Triton ensemble calls, successful or not", buckets=BUCKETS)
RANKING_FAILURES = Counter("cinesync_ranking_failures_total", "Triton ranking calls that failed or timed out")
MODEL_VERSION = Gauge("cinesync_model_version", "Version of the serving bundle in use")
INDEX_ITEMS = Gauge("cinesync_index_items", "Items in each loaded retriever index", ["version", "member"])
EXPOSURES = Counter("cinesync_exposures_total", "Answers served, by experiment and variant", ["experiment", "variant"])
FEEDBACK = Counter("cinesync_feedback_total", "Feedback received, by kind and whether its exposure was known "
                   "(true, false, unknown: Redis unreachable)", ["kind", "matched"])
HISTORY_UNKNOWN_ITEMS = Counter(
    "cinesync_history_unknown_items_total", "History items not in the served catalog, ignored, by where the "
    "history came from (request, live)", ["source"],
)
HISTORY_WRITES = Counter("cinesync_history_writes_total", "Feedback added to the live history (stored) or "
                         "lost to a Redis outage (failed)", ["outcome"])
JOB_QUEUE_DEPTH = Gauge("cinesync_job_queue_depth", "Training jobs waiting in the Celery queue (the length of "
                        "its Redis list: what a queue-depth autoscaler reads)")
HISTORY_SEEDED = Counter("cinesync_history_seeded_users_total", "Users whose live history was seeded at publish")
