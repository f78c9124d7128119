"""The federated-run contract between the control plane (which starts runs through Flower's Control
API), the Flower app in federated/ (whose ServerApp runs them) and the CLI: a run's configuration, its
status file with the round history, and the Flower App Bundle (FAB) that names the app's components.

A run is keyed by CineSync's run id: its status lives in ``<home>/federated/<run id>/status.json``,
written by the ServerApp after every round (and by the control plane when Flower reports the run
ended without it), and its global model becomes the training run ``<home>/runs/<run id>``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RUN_CONFIG_KEY = "cinesync-run"  # the one run-config entry of the FAB: the FederatedRunConfig as JSON
STATUS_FILE = "status.json"
FAB_NAME = "cinesync-federated"
FAB_VERSION = "1.0.0"
FAB_PUBLISHER = "cinesync"
START_FROM = ("base", "scratch")
MODES = ("strategy", "secagg")  # secagg: Flower's SecAgg+ workflow (FedAvg only; no screening, robust rules or DP)


class State:
    """What a federated run is doing; the last four are final."""

    STARTING = "starting"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    STOPPED = "stopped"
    BUDGET_EXHAUSTED = "budget_exhausted"  # the DP accountant refused the next round
    OPEN = (STARTING, RUNNING)


class InvalidRunConfig(ValueError):
    """A federated run configuration that cannot run; the message says what to change."""


@dataclass
class FederatedRunConfig:
    """How one federated run trains; every field has a default a run on one machine can use."""

    run_id: str = ""
    base_run: str = ""  # training run folder: the catalog, the export checks' data, the starting weights
    kind: str = "two_tower"
    strategy: str = "fedavg"
    strategy_params: dict[str, float] = field(default_factory=dict)
    rounds: int = 10
    min_clients: int = 2  # nodes that must be connected before a round starts, and that must train in it
    fraction_train: float = 1.0
    local_epochs: int = 1
    # The clients' minibatch (0: the base run's own). 128 was chosen on validation for 10 clients of ML-100k:
    # a client holds a tenth of the data, and the base run's 512 left it few steps per round.
    local_batch_size: int = 128
    proximal_mu: float = 0.0  # FedProx's proximal term on every client (0: plain local training)
    round_timeout_s: float = 600.0
    start_from: str = "base"  # "base": the base run's weights of the kind; "scratch": fresh weights
    max_update_norm: float = 1e4  # a reply whose update (reply - global) has a larger L2 norm is rejected
    dp_noise_multiplier: float = 0.0  # > 0: server-side fixed-clipping DP with an RDP accountant
    dp_clipping_norm: float = 1.0
    dp_delta: float = 1e-5
    dp_max_epsilon: float = 0.0  # > 0: stop before a round would spend more
    publish_on_budget: bool = False  # when the budget stops a run: publish the last accepted model
    publish: bool = True  # register, export and publish (not current) the global model when done
    mode: str = "strategy"
    seed: int = 0

    def check(self) -> None:
        """InvalidRunConfig on anything a run would fail on later."""
        problems = []
        if self.rounds < 1:
            problems.append(f"rounds must be at least 1, got {self.rounds}")
        if self.min_clients < 1:
            problems.append(f"min_clients must be at least 1, got {self.min_clients}")
        if not 0 < self.fraction_train <= 1:
            problems.append(f"fraction_train must be in (0, 1], got {self.fraction_train}")
        if self.local_epochs < 1:
            problems.append(f"local_epochs must be at least 1, got {self.local_epochs}")
        if self.local_batch_size < 0:
            problems.append(f"local_batch_size cannot be negative, got {self.local_batch_size}")
        if self.proximal_mu < 0 or self.dp_noise_multiplier < 0 or self.dp_max_epsilon < 0:
            problems.append("proximal_mu, dp_noise_multiplier and dp_max_epsilon cannot be negative")
        if self.dp_clipping_norm <= 0 or not 0 < self.dp_delta < 1:
            problems.append("dp_clipping_norm must be positive and dp_delta in (0, 1)")
        if not self.max_update_norm > 0 or not math.isfinite(self.max_update_norm):
            problems.append(f"max_update_norm must be a positive number, got {self.max_update_norm}")
        if self.start_from not in START_FROM:
            problems.append(f"start_from must be one of {', '.join(START_FROM)}, got {self.start_from!r}")
        if self.mode not in MODES:
            problems.append(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        elif self.mode == "secagg" and (self.strategy != "fedavg" or self.private):
            problems.append("secagg mode aggregates with fedavg and cannot be combined with DP or another strategy "
                            "(Flower's SecAgg+ workflow is legacy-API only)")
        if self.round_timeout_s <= 0:
            problems.append(f"round_timeout_s must be positive, got {self.round_timeout_s}")
        if problems:
            raise InvalidRunConfig("; ".join(problems))

    @property
    def private(self) -> bool:
        return self.dp_noise_multiplier > 0

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> FederatedRunConfig:
        values = json.loads(text)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InvalidRunConfig(f"unknown federated setting(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
        return cls(**values)


def new_run_id() -> str:
    return "fed-" + time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]


def status_path(home: Path, run_id: str) -> Path:
    return Path(home) / "federated" / run_id / STATUS_FILE


def read_status(home: Path, run_id: str) -> dict[str, Any]:
    """The run's status; FileNotFoundError for a run id never started here."""
    return dict(json.loads(status_path(home, run_id).read_text()))


def write_status(home: Path, run_id: str, status: dict[str, Any]) -> None:
    """Replace the status file in one step (readers never see half of it)."""
    path = status_path(home, run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.partial")
    partial.write_text(json.dumps(status, indent=2))
    partial.replace(path)


def all_statuses(home: Path) -> list[dict[str, Any]]:
    """Every run's status, oldest first."""
    folder = Path(home) / "federated"
    paths = sorted(folder.glob(f"*/{STATUS_FILE}")) if folder.is_dir() else []
    statuses = []
    for path in paths:
        try:
            statuses.append(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError):
            continue  # a run folder being created
    return sorted(statuses, key=lambda status: str(status.get("started", "")))


def fab_files(mode: str = "strategy") -> dict[str, bytes]:
    """The FAB's files: its pyproject.toml and a module naming the ServerApp and the ClientApp of
    ``mode``, which live in the installed federated package (SuperNodes and the SuperLink run
    CineSync's environment with runtime dependency installation off)."""
    clientapp = "client" if mode == "strategy" else "secagg_client"
    pyproject = f'''[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "{FAB_NAME}"
version = "{FAB_VERSION}"
description = "CineSync's federated recommender training"
dependencies = []

[tool.hatch.build.targets.wheel]
packages = ["."]

[tool.flwr.app]
publisher = "{FAB_PUBLISHER}"

[tool.flwr.app.components]
serverapp = "cinesync_app:server"
clientapp = "cinesync_app:{clientapp}"

[tool.flwr.app.config]
{RUN_CONFIG_KEY} = "{{}}"
'''
    module = '"""CineSync\'s Flower app: the components live in the installed federated package."""\n' \
             "from federated.client_app import app as client\nfrom federated.secagg import client as secagg_client\n" \
             "from federated.server_app import app as server\n" '__all__ = ["client", "secagg_client", "server"]\n'
    return {"pyproject.toml": pyproject.encode(), "cinesync_app.py": module.encode()}


def build_fab(mode: str = "strategy") -> tuple[bytes, str]:
    """The FAB of ``mode`` (built by Flower's own builder) and its SHA-256."""
    from flwr.cli.build import build_fab_from_files

    fab, _ = build_fab_from_files(fab_files(mode))
    return fab, hashlib.sha256(fab).hexdigest()
