"""Prometheus metrics of the control plane."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from cinesync.federation import State, all_statuses

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
MODEL_RELOADS = Counter("cinesync_triton_model_reloads_total", "Stage models reloaded because every call to them "
                        "timed out for a while with Triton live (a python-backend stub gone)", ["model"])
MODEL_VERSION = Gauge("cinesync_model_version", "Version of the serving bundle in use")
INDEX_ITEMS = Gauge("cinesync_index_items", "Items in each loaded retriever index", ["version", "member"])
EXPOSURES = Counter("cinesync_exposures_total", "Answers served, by experiment, variant (empty outside one) and "
                    "the model version that retrieved them", ["experiment", "variant", "version"])
FEEDBACK = Counter("cinesync_feedback_total", "Feedback received, by kind and whether its exposure was known "
                   "(true, false, unknown: Redis unreachable)", ["kind", "matched"])
FEEDBACK_EVENTS = Counter(
    "cinesync_feedback_events_total", "Feedback whose answer is known, by kind and by that answer's experiment, "
    "variant and model version (a variant's watch rate: its watch events over its exposures)",
    ["kind", "experiment", "variant", "version"],
)
HISTORY_UNKNOWN_ITEMS = Counter(
    "cinesync_history_unknown_items_total", "History items not in the served catalog, ignored, by where the "
    "history came from (request, live)", ["source"],
)
HISTORY_WRITES = Counter("cinesync_history_writes_total", "Feedback added to the live history at once (stored), "
                         "queued while Redis is away (queued), added from that queue once it answers (replayed), "
                         "or dropped (Redis refused it, or the queue was full)", ["outcome"])
JOB_QUEUE_DEPTH = Gauge("cinesync_job_queue_depth", "Training jobs waiting in the Celery queue (the length of "
                        "its Redis list: what a queue-depth autoscaler reads)")
HISTORY_SEEDED = Counter("cinesync_history_seeded_users_total", "Users whose live history was seeded at publish")
ENCODER_CACHE = Counter(
    "cinesync_encoder_cache_lookups_total", "Encoder cache lookups by where the history came from (request, "
    "live) and result (hit, miss); a WATCH's nearline refresh is counted under source 'watch'", ["source", "result"],
)
ENCODER_CACHE_ENTRIES = Gauge("cinesync_encoder_cache_entries", "Histories whose user vectors the encoder cache holds")
ENCODER_CACHE_BYTES = Gauge("cinesync_encoder_cache_bytes", "Estimated memory of the encoder cache's entries")


class FederatedRunsCollector:
    """Federated runs and their rounds, read from the runs' status files at each scrape (Flower exposes
    no metrics; the ServerApp writes a status file after every round): counters per run of rounds,
    round seconds, clients by outcome, rejected replies by reason and bytes by direction; gauges of the
    last round's validation NDCG@10, the epsilon spent and the run's epsilon budget. The newest ``keep`` runs are reported."""

    def __init__(self, home: Path, *, keep: int = 10) -> None:
        self.home = home
        self.keep = keep

    def collect(self) -> Iterator[Metric]:
        statuses = all_statuses(self.home)[-self.keep:]
        by_state = GaugeMetricFamily("cinesync_federated_runs", "Federated runs (the newest reported) by state", labels=["state"])
        for state in (State.STARTING, State.RUNNING, State.COMPLETED, State.FAILED, State.STOPPED, State.BUDGET_EXHAUSTED):
            by_state.add_metric([state], sum(1 for s in statuses if s.get("state") == state))
        rounds = CounterMetricFamily("cinesync_federated_rounds", "Rounds finished", labels=["run"])
        seconds = CounterMetricFamily("cinesync_federated_round_seconds", "Wall time of the finished rounds", labels=["run"])
        clients = CounterMetricFamily("cinesync_federated_clients", "Clients per round by outcome (sampled, replied, "
                                      "failed, missing, rejected), summed over rounds", labels=["run", "outcome"])
        rejected = CounterMetricFamily("cinesync_federated_rejected_replies", "Replies rejected before aggregation",
                                       labels=["run", "reason"])
        traffic = CounterMetricFamily("cinesync_federated_bytes", "Model bytes sent to and received from clients",
                                      labels=["run", "direction"])
        ndcg = GaugeMetricFamily("cinesync_federated_validation_ndcg_at_10", "The last round's federated validation NDCG@10",
                                 labels=["run"])
        epsilon = GaugeMetricFamily("cinesync_federated_epsilon", "Epsilon spent so far (DP runs)", labels=["run"])
        open_runs = GaugeMetricFamily("cinesync_federated_run_open", "1 while the run is starting or running",
                                      labels=["run"])
        budget = GaugeMetricFamily("cinesync_federated_epsilon_budget", "The run's epsilon budget (dp_max_epsilon; "
                                   "runs with one)", labels=["run"])
        for status in statuses:
            run, history = str(status.get("run_id", "")), status.get("rounds", [])
            rounds.add_metric([run], len(history))
            seconds.add_metric([run], sum(r["seconds"] for r in history))
            for outcome in ("sampled", "replied", "failed", "missing", "rejected"):
                clients.add_metric([run, outcome], sum(r.get(outcome, 0) for r in history))
            for reason in sorted({reason for r in history for reason in r.get("rejected_reasons", {})}):
                rejected.add_metric([run, reason], sum(r.get("rejected_reasons", {}).get(reason, 0) for r in history))
            traffic.add_metric([run, "sent"], sum(r.get("bytes_sent", 0) for r in history))
            traffic.add_metric([run, "received"], sum(r.get("bytes_received", 0) for r in history))
            if history:
                ndcg.add_metric([run], history[-1].get("validation", {}).get("ndcg@10", 0.0))
            if status.get("epsilon") is not None:
                epsilon.add_metric([run], status["epsilon"])
            open_runs.add_metric([run], float(status.get("state") in (State.STARTING, State.RUNNING)))
            if (status.get("config") or {}).get("dp_max_epsilon"):
                budget.add_metric([run], status["config"]["dp_max_epsilon"])
        yield from (by_state, open_runs, rounds, seconds, clients, rejected, traffic, ndcg, epsilon, budget)
