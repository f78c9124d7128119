"""One typed settings object for every CineSync process, read from the environment."""

from __future__ import annotations

import hashlib
import sys
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from cinesync.triton import MAX_CANDIDATES

TritonTarget = Literal["python", "stock", "tensorrt"]
Precision = Literal["fp32", "int8"]


class Settings(BaseSettings):
    """Settings shared by the launcher, workers, exporters and control plane.

    Every field reads ``CINESYNC_<NAME>``; ``REDIS_URL`` and ``TRITON_URL`` are read unprefixed too.
    Defaults work on one machine.
    """

    model_config = SettingsConfigDict(env_prefix="CINESYNC_", extra="ignore")

    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        validation_alias=AliasChoices("REDIS_URL", "CINESYNC_REDIS_URL"),
        description="Celery broker and result backend.",
    )
    triton_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("TRITON_URL", "CINESYNC_TRITON_URL"),
        description="gRPC address (host:port) of a running Triton; unset means CineSync starts one.",
    )
    home: Path = Field(default=Path("var"), description="State folder: runs, serving bundles, logs.")
    model_repository: Path = Field(default=Path("model_repository"), description="Triton model repository.")
    triton_target: TritonTarget = Field(
        default="python",
        description="'python': ONNX Runtime inside the python backend (bundled Triton); "
        "'stock': platform onnxruntime_onnx with the TensorRT accelerator, for the stock Triton container; "
        "'tensorrt': TensorRT engines (tensorrt_plan), built where the tensorrt package and a GPU are present.",
    )
    triton_instances: int = Field(
        default=1, ge=1,
        description="Instances of each stage model where the target places them on the CPU (the python backend); "
        "written into the published configs.",
    )
    triton_queue_delay_us: int = Field(
        default=0, ge=0,
        description="Dynamic batching: longest wait of a request for others to batch with, microseconds; written "
        "into the published configs (requests queued while an instance is busy batch anyway).",
    )
    precision: Precision = Field(
        default="fp32", description="'int8': serve the neural models as QDQ INT8, if the accuracy guard accepts."
    )
    int8_max_ndcg_loss: float = Field(
        default=0.01, ge=0, lt=1,
        description="Largest relative validation NDCG@10 loss of the INT8 pipeline against fp32 that may be published.",
    )
    data: str = Field(default="synthetic", description="Data set: 'synthetic' or a folder of a known format.")
    host: str = Field(default="127.0.0.1", description="Address the servers CineSync starts listen on.")
    grpc_port: int = Field(default=50051, ge=0, le=65535, description="Control plane gRPC port (0: any free).")
    metrics_port: int = Field(default=9464, ge=0, le=65535, description="Control plane Prometheus port.")
    console_port: int = Field(default=8090, ge=0, le=65535, description="Operator console HTTP port (0: any free).")
    console_session_s: int = Field(
        default=8 * 3600, ge=60, description="How long an operator console login lasts before the token is asked again.",
    )
    console_secret: str = Field(
        default="", description="Key signing the console's session cookies (share it between console replicas); "
        "empty: a random key per process, so a restart logs everyone out.",
    )
    console_control_plane: str = Field(
        default="", description="The control plane the console calls, host:port (empty: <host>:<grpc_port>).",
    )
    control_plane_metrics_url: str = Field(
        default="", description="Where the console reads the control plane's own figures (empty: "
        "http://<host>:<metrics_port>/metrics).",
    )
    prometheus_url: str = Field(
        default="", description="Prometheus HTTP API the console's monitoring page reads (empty: the control "
        "plane's own figures only).",
    )
    flower_port: int = Field(default=5555, ge=0, le=65535, description="Flower dashboard port.")
    superlink_address: str | None = Field(
        default=None,
        description="HTTP address (host:port) of a running Flower SuperLink; unset means CineSync starts one.",
    )
    superlink_port: int = Field(
        default=9093, ge=0, le=65535,
        description="HTTP port (Control, Fleet and Runtime APIs) of the Flower SuperLink CineSync starts; "
        "Flower's own default, 8000, is Triton's.",
    )
    superlink_health_port: int = Field(
        default=9094, ge=0, le=65535, description="gRPC health port of the Flower SuperLink CineSync starts.",
    )
    superlink_busy_timeout_ms: int = Field(
        default=25_000, ge=0,
        description="How long the SuperLink CineSync starts waits for its SQLite state's lock before a write "
        "fails (Flower's own: 5,000 ms; a failed write answers HTTP 500 and a SuperNode drops its reply); below "
        "the 30 s after which Flower's HTTP clients give up and send again, so waiting writers do not pile up.",
    )
    supernode_push_attempts: int = Field(
        default=6, ge=1,
        description="Tries of a SuperNode CineSync starts at pushing a reply the SuperLink answered with a "
        "server error (5xx), with exponential backoff from 1 s (Flower's own: one try on a 500).",
    )
    triton_http_port: int = Field(default=8000, ge=0, le=65535, description="HTTP port of the Triton CineSync starts.")
    triton_grpc_port: int = Field(default=8001, ge=0, le=65535, description="gRPC port of the Triton CineSync starts.")
    triton_metrics_port: int = Field(
        default=8002, ge=0, le=65535, description="Prometheus port of the Triton CineSync starts (deploy/prometheus.yml)."
    )
    celery_queue: str = Field(
        default="cinesync", description="Prefix of the queue the training pipeline runs on (see job_queue)."
    )
    visibility_timeout_s: int = Field(
        default=3600, ge=1, description="Seconds before an unacknowledged job is delivered to another worker."
    )
    retrieval_candidates: int = Field(
        default=0, ge=0,
        description="Candidates each retriever proposes per request; 0: the depth the served run was evaluated with. "
        "All retrievers' candidates together must fit one ranking request (cinesync.triton.MAX_CANDIDATES).",
    )
    retained_versions: int = Field(
        default=3, ge=1, description="Published versions kept on disk (the current one is always kept too)."
    )
    faiss_exact_below: int = Field(
        default=50_000, ge=0, description="Catalogs up to this size get exact FAISS search; larger ones an IVF index."
    )
    faiss_recall_target: float = Field(
        default=0.98, gt=0, le=1,
        description="Recall@100 against exact search that an IVF index must reach, per domain, measured at publish.",
    )
    ranking_timeout_s: float = Field(default=1.0, gt=0, description="Longest wait for Triton per request.")
    history_keep: int = Field(
        default=1000, ge=1,
        description="Items of each user's live history kept in Redis (the most recent; exclude_seen leaves "
        "them all out, the models read the version's history length of them).",
    )
    history_on_click: bool = Field(
        default=False, description="Whether a CLICK feedback also enters the user's live history (WATCH always does).",
    )
    encoder_cache_entries: int = Field(
        default=100_000, ge=0,
        description="Histories whose encoded user vectors the control plane keeps (least recently used dropped "
        "first; 0.76 KB each with one 64-dim encoder, 1.1 KB with two); 0: encode every request.",
    )
    encoder_cache_idle_s: float = Field(
        default=300.0, gt=0,
        description="Seconds an encoded history stays cached unused (a history a watch replaced is never "
        "asked for again: the expiry keeps such entries from filling the cache to its bound).",
    )
    quality_window: int = Field(
        default=10_000, ge=1,
        description="Answers the online quality and drift gauges are computed over (the most recent ones).",
    )
    bundle_poll_s: float = Field(default=2.0, gt=0, description="How often the control plane looks for a new model.")
    torch_threads: int = Field(default=2, ge=1, description="Threads for training.")
    admin_tokens: str = Field(
        default="",
        description="Comma-separated bearer tokens for the AdminService; unset: the launcher makes one "
        "and keeps it in <home>/admin-token (mode 600).",
    )
    require_admin_tokens: bool = Field(
        default=False,
        description="Refuse to start the control plane without admin tokens (deployments set it; on one "
        "machine the launcher makes a token, and without one every admin call is refused).",
    )
    max_concurrent_rpcs: int = Field(
        default=256, ge=1, description="RPCs the control plane runs at once; more get RESOURCE_EXHAUSTED."
    )
    max_connection_age_s: float = Field(
        default=0.0, ge=0,
        description="Close each client connection after this long (with as long again to finish its calls), so "
        "clients re-resolve a name that spreads over replicas and reach new ones; 0: never.",
    )
    max_message_bytes: int = Field(default=1 << 20, ge=1024, description="Largest gRPC message accepted.")
    tls_cert: Path | None = Field(default=None, description="PEM certificate chain: serve gRPC over TLS.")
    tls_key: Path | None = Field(default=None, description="PEM private key for tls_cert.")

    @model_validator(mode="after")
    def _tls_pair(self) -> Settings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together: set both (TLS) or neither")
        return self

    @model_validator(mode="after")
    def _candidates_fit_one_request(self) -> Settings:
        if self.retrieval_candidates > MAX_CANDIDATES:
            raise ValueError(
                f"retrieval_candidates={self.retrieval_candidates} exceeds the {MAX_CANDIDATES} candidates "
                "one ranking request may carry: Triton would reject every request's candidates"
            )
        return self

    @property
    def installation(self) -> str:
        """A short digest of this home, model repository and Python environment."""
        owner = f"{self.home.resolve()}|{self.model_repository.resolve()}|{sys.prefix}"
        return hashlib.sha256(owner.encode()).hexdigest()[:10]

    @property
    def job_queue(self) -> str:
        """The Celery queue of this installation: workers started for another home, another model
        repository or another Python environment consume other queues and never take these jobs."""
        return f"{self.celery_queue}.{self.installation}"

    @property
    def redis_namespace(self) -> str:
        """Prefix of this installation's experiment, exposure and feedback keys in Redis."""
        return f"cinesync:{self.installation}"

    @property
    def admin_token_file(self) -> Path:
        return self.home.resolve() / "admin-token"

    def admin_token_list(self) -> list[str]:
        """The configured admin tokens, else the one in admin_token_file (none when neither exists)."""
        configured = [t.strip() for t in self.admin_tokens.split(",") if t.strip()]
        if configured or not self.admin_token_file.is_file():
            return configured
        return [self.admin_token_file.read_text().strip()]

    @property
    def runs_dir(self) -> Path:
        return self.home.resolve() / "runs"

    @property
    def serving_dir(self) -> Path:
        return self.home.resolve() / "serving"

    @property
    def logs_dir(self) -> Path:
        return self.home.resolve() / "logs"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once from the environment."""
    return Settings()
