"""The Helm chart, rendered and checked here without a cluster (as Apache Airflow's chart tests do):
`helm lint --strict` and `helm template --kube-version 1.30` with a real helm (deploy/install_helm.py)
over the default values and the GPU, S3, KEDA, monitoring and TLS variants; every rendered object
validated against Kubernetes' schemas (kubernetes-validate, strict) or, for KEDA's ScaledObject and
the Prometheus Operator's ServiceMonitor, against small schemas of their own; and the wiring: ports,
probes and environment names against the settings, selectors against pod labels, the KEDA queue
against the one the workers consume."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from cinesync.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "deploy" / "helm" / "cinesync"
KUBE_VERSION = "1.30.0"
TOKENS = {"adminTokens": {"tokens": "a-token"}}
VARIANTS: dict[str, dict[str, Any]] = {
    "default": TOKENS,
    "gpu": {**TOKENS, "triton": {"gpus": 2}},
    "s3": {**TOKENS, "modelRepository": {"uri": "s3://bucket/models", "credentialsSecret": "s3-credentials"}},
    "keda": {**TOKENS, "worker": {"keda": {"enabled": True, "maxReplicas": 6}}},
    "monitoring": {**TOKENS, "serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True},
                   "controlPlane": {"autoscaling": {"enabled": False}},
                   "superlink": {"enabled": False}},
    "external": {"adminTokens": {"existingSecret": "admin"}, "tls": {"secretName": "cinesync-tls"},
                 "redis": {"deploy": False, "url": "redis://redis.example:6379/0"},
                 "home": {"existingClaim": "home"}, "modelRepository": {"existingClaim": "models"}},
}
# Small schemas for the custom resources kubernetes-validate has none for: what the chart relies on.
CUSTOM_SCHEMAS: dict[str, dict[str, Any]] = {
    "ScaledObject": {
        "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "keda.sh/v1alpha1"},
            "spec": {"type": "object", "required": ["scaleTargetRef", "triggers"], "additionalProperties": False,
                     "properties": {
                         "scaleTargetRef": {"type": "object", "required": ["name"]},
                         "minReplicaCount": {"type": "integer", "minimum": 0},
                         "maxReplicaCount": {"type": "integer", "minimum": 1},
                         "triggers": {"type": "array", "minItems": 1, "items": {
                             "type": "object", "required": ["type", "metadata"],
                             "properties": {"type": {"const": "redis"}, "metadata": {
                                 "type": "object", "required": ["address", "listName", "listLength"],
                                 "additionalProperties": {"type": "string"}}}}}}}}},
    "ServiceMonitor": {
        "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "spec": {"type": "object", "required": ["selector", "endpoints"], "additionalProperties": False,
                     "properties": {"selector": {"type": "object", "required": ["matchLabels"]},
                                    "endpoints": {"type": "array", "minItems": 1, "items": {
                                        "type": "object", "required": ["port"],
                                        "properties": {"port": {"type": "string"},
                                                       "interval": {"type": "string"}}}}}}}},
    "PrometheusRule": {
        "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "spec": {"type": "object", "required": ["groups"], "additionalProperties": False,
                     "properties": {"groups": {"type": "array", "minItems": 1, "items": {
                         "type": "object", "required": ["name", "rules"],
                         "properties": {"rules": {"type": "array", "items": {
                             "type": "object", "required": ["expr"]}}}}}}}}},
}


def _helm() -> str:
    found = shutil.which("helm", path=str(Path(sys.executable).parent)) or shutil.which("helm")
    if found is None:
        pytest.fail("no helm binary: `make setup` installs one (deploy/install_helm.py)")
    return found


def _values_file(values: dict[str, Any], folder: Path) -> Path:
    path = folder / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def _render(values: dict[str, Any], folder: Path) -> list[dict[str, Any]]:
    result = subprocess.run([_helm(), "template", "cs", str(CHART), "--kube-version", KUBE_VERSION,
                             "-f", str(_values_file(values, folder))], check=False, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    return {name: _render(values, tmp_path_factory.mktemp(name)) for name, values in VARIANTS.items()}


def _one(docs: list[dict[str, Any]], kind: str, suffix: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"].endswith(suffix)]
    assert len(found) == 1, (kind, suffix, [d["metadata"]["name"] for d in docs])
    return found[0]


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    return dict(deployment["spec"]["template"]["spec"]["containers"][0])


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {entry["name"]: entry.get("value", entry.get("valueFrom")) for entry in container.get("env", [])}


def _default(field: str) -> Any:
    return Settings.model_fields[field].default


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_the_chart_lints_strictly(variant: str, tmp_path: Path) -> None:
    result = subprocess.run([_helm(), "lint", "--strict", str(CHART), "-f", str(_values_file(VARIANTS[variant], tmp_path))],
                            check=False, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_values_outside_the_schema_or_without_tokens_are_refused(tmp_path: Path) -> None:
    for values, expected in (({**TOKENS, "triton": {"gpus": -1}}, "gpus"),
                             ({**TOKENS, "controlPlane": {"replicas": -2}}, "replicas"),
                             ({**TOKENS, "triton": {"gpuType": "h200"}}, "gpuType"),
                             ({**TOKENS, "modelRepository": None}, "modelRepository"),
                             ({**TOKENS, "modelRepository": {"uri": "ftp://x"}}, "uri"),
                             ({**TOKENS, "controlPlane": {"replica": 3}}, "replica"),
                             ({}, "adminTokens.tokens")):
        result = subprocess.run([_helm(), "template", "cs", str(CHART), "-f", str(_values_file(values, tmp_path))],
                                check=False, capture_output=True, text=True)
        assert result.returncode != 0 and expected in result.stderr, (values, result.stderr)


def test_every_rendered_object_is_valid(rendered: dict[str, list[dict[str, Any]]]) -> None:
    kinds = set()
    for docs in rendered.values():
        for doc in docs:
            kinds.add(doc["kind"])
            if doc["kind"] in CUSTOM_SCHEMAS:
                jsonschema.validate(doc, CUSTOM_SCHEMAS[doc["kind"]])
            else:
                kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
    assert {"Deployment", "StatefulSet", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler", "Secret",
            "PersistentVolumeClaim", "ConfigMap", "ScaledObject", "ServiceMonitor", "PrometheusRule"} <= kinds


def test_selectors_match_the_labels_of_what_they_select(rendered: dict[str, list[dict[str, Any]]]) -> None:
    for docs in rendered.values():
        pods = [d["spec"]["template"]["metadata"]["labels"] for d in docs if d["kind"] in ("Deployment", "StatefulSet")]
        for doc in docs:
            if doc["kind"] in ("Deployment", "StatefulSet"):
                assert doc["spec"]["selector"]["matchLabels"].items() <= doc["spec"]["template"]["metadata"]["labels"].items()
            selector = (doc["spec"].get("selector") if doc["kind"] == "Service" else
                        doc["spec"]["selector"]["matchLabels"] if doc["kind"] == "PodDisruptionBudget" else None)
            if selector is not None:
                assert sum(selector.items() <= labels.items() for labels in pods) == 1, doc["metadata"]["name"]
        targets = {d["metadata"]["name"] for d in docs if d["kind"] == "Deployment"}
        for doc in docs:
            if doc["kind"] == "HorizontalPodAutoscaler":
                assert doc["spec"]["scaleTargetRef"]["name"] in targets
            if doc["kind"] == "ScaledObject":
                assert doc["spec"]["scaleTargetRef"]["name"] in targets


def test_the_control_plane_is_wired_as_the_settings_read_it(rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["default"]
    deployment = _one(docs, "Deployment", "-control-plane")
    container, grpc_port = _container(deployment), _default("grpc_port")
    env = _env(container)
    names = {f"CINESYNC_{name.upper()}" for name in Settings.model_fields} | {"REDIS_URL", "TRITON_URL"}
    assert set(env) <= names, set(env) - names
    assert env["CINESYNC_GRPC_PORT"] == str(grpc_port) and env["CINESYNC_METRICS_PORT"] == str(_default("metrics_port"))
    assert float(env["CINESYNC_MAX_CONNECTION_AGE_S"]) > 0  # clients re-resolve the headless Service
    assert env["CINESYNC_ADMIN_TOKENS"]["secretKeyRef"]["key"] == "tokens"
    assert env["CINESYNC_REQUIRE_ADMIN_TOKENS"] == "true"
    assert {p["containerPort"] for p in container["ports"]} == {grpc_port, _default("metrics_port")}
    assert container["readinessProbe"]["grpc"] == {"port": grpc_port, "service": "cinesync.v1.RecommendationService"}
    assert container["livenessProbe"]["grpc"]["port"] == grpc_port and "torch" not in container["image"]
    service = _one(docs, "Service", "-control-plane")
    assert service["spec"]["clusterIP"] == "None" and {p["port"] for p in service["spec"]["ports"]} >= {grpc_port}
    assert env["TRITON_URL"].endswith(f"-triton:{_default('triton_grpc_port')}")
    assert "replicas" not in deployment["spec"]  # the HPA owns it
    assert _one(rendered["monitoring"], "Deployment", "-control-plane")["spec"]["replicas"] == 2


def test_the_superlink_is_wired_as_the_control_plane_and_flower_read_it(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    docs = rendered["default"]
    deployment = _one(docs, "Deployment", "-superlink")
    container, port, health = _container(deployment), _default("superlink_port"), _default("superlink_health_port")
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"]["type"] == "Recreate"  # one SQLite writer
    command = " ".join(container["command"] + container["args"])
    assert f"--port={port}" in command and f"--health-server-address=0.0.0.0:{health}" in command
    assert "--database=\"$FLWR_HOME/superlink.db\"" in command and "--disable-runtime-dependency-installation" in command
    assert {p["containerPort"] for p in container["ports"]} == {port, health}
    assert container["readinessProbe"]["grpc"]["port"] == container["livenessProbe"]["grpc"]["port"] == health
    env = _env(container)
    assert env["FLWR_HOME"].startswith(env["CINESYNC_HOME"] + "/")  # its state survives a restart in the home claim
    assert env["CINESYNC_CELERY_QUEUE"] == _env(_container(_one(docs, "Deployment", "-worker")))["CINESYNC_CELERY_QUEUE"]
    assert container["volumeMounts"][0]["mountPath"] == env["CINESYNC_HOME"]
    service = _one(docs, "Service", "-superlink")
    address = _env(_container(_one(docs, "Deployment", "-control-plane")))["CINESYNC_SUPERLINK_ADDRESS"]
    assert address == f"{service['metadata']['name']}:{port}" and {p["port"] for p in service["spec"]["ports"]} == {port}
    off = rendered["monitoring"]
    assert not [d for d in off if d["metadata"]["name"].endswith("-superlink")]
    assert "CINESYNC_SUPERLINK_ADDRESS" not in _env(_container(_one(off, "Deployment", "-control-plane")))


def test_triton_gets_gpus_probes_and_its_repository_from_values(rendered: dict[str, list[dict[str, Any]]]) -> None:
    default = _container(_one(rendered["default"], "Deployment", "-triton"))
    assert "nvidia.com/gpu" not in default["resources"]["limits"]
    assert default["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert default["startupProbe"]["httpGet"]["path"] == default["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert {p["containerPort"] for p in default["ports"]} == {_default("triton_http_port"), _default("triton_grpc_port"),
                                                              _default("triton_metrics_port")}
    assert "--model-repository=/models" in default["args"] and default["volumeMounts"][0]["mountPath"] == "/models"
    gpu = _container(_one(rendered["gpu"], "Deployment", "-triton"))
    assert gpu["resources"]["limits"]["nvidia.com/gpu"] == 2
    s3 = _container(_one(rendered["s3"], "Deployment", "-triton"))
    assert "--model-repository=s3://bucket/models" in s3["args"] and "volumeMounts" not in s3
    assert s3["envFrom"] == [{"secretRef": {"name": "s3-credentials"}}]


def test_keda_scales_workers_on_the_queue_they_consume(
    rendered: dict[str, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "prefix", "/opt/venv")  # the images' environment (deploy/Dockerfile)
    queue = Settings(home=Path("/var/lib/cinesync"), model_repository=Path("/models"), celery_queue="cinesync").job_queue
    scaled = _one(rendered["keda"], "ScaledObject", "-worker")
    trigger = scaled["spec"]["triggers"][0]["metadata"]
    assert trigger["listName"] == queue and trigger["address"] == "cs-cinesync-redis:6379"
    assert scaled["spec"]["maxReplicaCount"] == 6
    assert "replicas" not in _one(rendered["keda"], "Deployment", "-worker")["spec"]
    assert not [d for d in rendered["default"] if d["kind"] == "ScaledObject"]


def test_secrets_tls_and_external_services_come_from_values(rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["external"]
    assert not [d for d in docs if d["kind"] in ("Secret", "PersistentVolumeClaim", "StatefulSet")]
    container = _container(_one(docs, "Deployment", "-control-plane"))
    env = _env(container)
    assert env["REDIS_URL"] == "redis://redis.example:6379/0"
    assert env["CINESYNC_ADMIN_TOKENS"]["secretKeyRef"]["name"] == "admin"
    assert env["CINESYNC_TLS_CERT"] == "/etc/cinesync/tls/tls.crt" and env["CINESYNC_TLS_KEY"] == "/etc/cinesync/tls/tls.key"
    volumes = _one(docs, "Deployment", "-control-plane")["spec"]["template"]["spec"]["volumes"]
    assert {"name": "tls", "secret": {"secretName": "cinesync-tls"}} in volumes
    assert {"name": "home", "persistentVolumeClaim": {"claimName": "home"}} in volumes


def test_the_chart_ships_the_grafana_dashboard_and_alert_rules_compose_provisions(rendered: dict[str, list[dict[str, Any]]]) -> None:
    config_map = _one(rendered["default"], "ConfigMap", "-grafana-dashboard")
    shipped = json.loads(config_map["data"]["cinesync.json"])
    assert shipped == json.loads((CHART / "dashboards" / "cinesync.json").read_text())
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    monitor = _one(rendered["monitoring"], "ServiceMonitor", "")
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    # The chart's PrometheusRule carries the very rules `make run`'s and compose's Prometheus load.
    rules = _one(rendered["monitoring"], "PrometheusRule", "")
    assert rules["spec"] == yaml.safe_load((CHART / "rules" / "cinesync.rules.yml").read_text())
    assert not [d for d in rendered["default"] if d["kind"] == "PrometheusRule"]


def test_the_console_reaches_the_control_plane_service_and_signs_sessions_with_a_secret(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    docs = rendered["default"]
    console = _container(_one(docs, "Deployment", "-console"))
    env = _env(console)
    service = _one(docs, "Service", "-control-plane")
    ports = {p["name"]: p["port"] for p in service["spec"]["ports"]}
    assert env["CINESYNC_CONSOLE_CONTROL_PLANE"] == f"dns:///{service['metadata']['name']}:{ports['grpc']}"
    assert env["CINESYNC_CONTROL_PLANE_METRICS_URL"] == f"http://{service['metadata']['name']}:{ports['metrics']}/metrics"
    assert "secretKeyRef" in env["CINESYNC_CONSOLE_SECRET"] and console["image"].split("/")[-1].startswith("console:")
    assert int(env["CINESYNC_CONSOLE_PORT"]) == _default("console_port")
    assert console["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert _one(docs, "Service", "-console")["spec"]["ports"][0]["port"] == _default("console_port")
