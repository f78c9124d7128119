"""The whole path with real processes: Redis, a Celery worker, Triton and the control plane on free
ports; training through Celery, then Recommend over gRPC."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from cinesync.jobs import JobFailed, catalog_update
from cinesync.settings import Settings
from cinesync.triton import ENCODERS, RANKER
from cinesync.v1 import admin_pb2 as admin
from cinesync.v1 import admin_pb2_grpc as admin_grpc
from cinesync.v1 import recommendation_pb2 as pb
from cinesync.v1 import recommendation_pb2_grpc as pb_grpc
from conftest import SHARED_DATA, SMALL_SYNTHETIC, small_pipeline
from control_plane.healthcheck import check
from launcher.client import recommend, record_feedback, wait_for_version
from launcher.jobs import follow
from launcher.served_eval import evaluate_served
from launcher.services.process import ManagedProcess, free_port
from launcher.stack import Stack
from recsys.data import InteractionDataset, load_dataset
from recsys.groups import GroupRanker
from recsys.run import load_run
from workers.celery_app import app
from workers.tasks import training_pipeline

pytestmark = pytest.mark.slow
DATA = str(SHARED_DATA / "ml-100k") if (SHARED_DATA / "ml-100k").is_dir() else SMALL_SYNTHETIC
RULES = Path(__file__).resolve().parent.parent / "deploy" / "helm" / "cinesync" / "rules" / "cinesync.rules.yml"


@pytest.fixture(scope="module")
def dataset() -> InteractionDataset:
    return load_dataset(DATA)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, dict[str, Any]]]:
    root = tmp_path_factory.mktemp("e2e")
    settings = Settings(
        home=root / "home", model_repository=root / "model_repository", grpc_port=0, metrics_port=0,
        flower_port=0, bundle_poll_s=0.5, data=DATA,
    )
    # These tests compare served scores with offline ones: on a busy 2-core CI machine a Triton call
    # may take longer than the default 1 s budget, and a degraded answer is not what they check
    # (test_zz_triton_down and tests/test_service.py check the budget itself).
    with pytest.MonkeyPatch.context() as patch, Stack(settings, say=print) as stack:
        patch.setenv("CINESYNC_RANKING_TIMEOUT_S", "10")
        stack.ensure_redis()
        stack.ensure_worker()
        stack.ensure_triton()
        stack.start_control_plane()
        # The evaluated fit is published, so served answers can be scored against the offline figures.
        # The path end to end, not the search: two EASE candidates instead of ten (ML-100k's 1682 items).
        spec = small_pipeline(options={"ease": {"l2_grid": "200,500", "emphasis_grid": "0"}})
        pipeline = training_pipeline(DATA, spec.to_dict(), serve="train")
        result = follow(pipeline.apply_async(queue=settings.job_queue), say=print, timeout=600)
        yield stack, result


def test_pipeline_reports_metrics_and_parity(served: tuple[Stack, dict[str, Any]]) -> None:
    _, result = served
    assert result["version"] == 1
    assert result["metrics"]["two_tower"]["recall@10"] > 0
    assert all(m["max_abs_error"] <= 1e-4 for m in result["onnx"])


def test_served_answers_score_as_the_offline_evaluation(
    served: tuple[Stack, dict[str, Any]], dataset: InteractionDataset
) -> None:
    """No training/serving skew: Recommend over gRPC for every test user scores what evaluate computed."""
    stack, result = served
    wait_for_version(stack.grpc_address, dataset.user_ids[0], result["version"], timeout=60)
    offline = result["metrics"][result["served"]]
    for send_histories in (False, True):  # the live history (seeded at publish), then the request's own
        served_eval = evaluate_served(stack.grpc_address, result["run_dir"], send_histories=send_histories)
        assert served_eval.ranked_by == {"triton": int(offline["users"])} and served_eval.versions == ["1"]
        for metric in ("ndcg@10", "recall@20"):
            assert abs(served_eval.metrics[metric] - offline[metric]) <= 0.005, (
                send_histories, metric, served_eval.metrics, offline)


def test_recommend_ranked_by_triton_excludes_seen(
    served: tuple[Stack, dict[str, Any]], dataset: InteractionDataset
) -> None:
    stack, result = served
    user = dataset.user_ids[0]
    seen = {dataset.items[i].item_id for i in dataset.item_idx[dataset.user_idx == 0]}
    response = wait_for_version(stack.grpc_address, user, result["version"], timeout=60)
    assert response.ranked_by == pb.RANKED_BY_TRITON and not response.degraded
    assert response.model_version == "1"
    ids = [item.item_id for item in response.items]
    assert len(ids) == 10 and len(set(ids)) == 10 and not seen & set(ids)
    scores = [item.score for item in response.items]
    assert scores == sorted(scores, reverse=True)
    assert all(item.title for item in response.items)
    big = recommend(stack.grpc_address, user, k=300)
    assert len({item.item_id for item in big.items}) == 300 and not seen & {i.item_id for i in big.items}


def test_a_watch_changes_the_next_answer_within_a_second(
    served: tuple[Stack, dict[str, Any]], dataset: InteractionDataset
) -> None:
    """A WATCH goes to the user's live history in Redis: the next Recommend, ranked by Triton with no
    retraining, leaves the watched item out and ranks the rest from the longer history."""
    stack, result = served
    user = dataset.user_ids[3]
    before = wait_for_version(stack.grpc_address, user, result["version"], timeout=60)
    watched = before.items[0].item_id
    started = time.monotonic()
    assert record_feedback(stack.grpc_address, before.request_id, user, watched).matched_exposure
    after = recommend(stack.grpc_address, user)
    elapsed = time.monotonic() - started
    assert elapsed < 1.0 and after.ranked_by == pb.RANKED_BY_TRITON and not after.degraded
    assert watched not in [item.item_id for item in after.items]
    assert [item.score for item in after.items[:9]] != [item.score for item in before.items[1:10]]
    # The watch was encoded nearline: once that is done, the next answer finds the new history's
    # vectors in the cache and reflects the watch like the answer encoded on the request path.
    control_plane = stack.addresses["control plane metrics"]
    second = dataset.user_ids[4]
    first = recommend(stack.grpc_address, second)
    refreshed, hits = _cache_lookups(control_plane, "watch", "miss"), _cache_lookups(control_plane, "live", "hit")
    record_feedback(stack.grpc_address, first.request_id, second, first.items[0].item_id)
    assert _wait_for_lookups(control_plane, "watch", "miss", refreshed + 1) == refreshed + 1
    cached = recommend(stack.grpc_address, second)
    assert _cache_lookups(control_plane, "live", "hit") == hits + 1
    assert cached.ranked_by == pb.RANKED_BY_TRITON and first.items[0].item_id not in [i.item_id for i in cached.items]
    assert [item.score for item in cached.items[:9]] != [item.score for item in first.items[1:10]]
    # A user the data never had, with one known watch: personalised, ranked by Triton.
    stranger = "e2e-stranger"
    assert recommend(stack.grpc_address, stranger).cold_start
    record_feedback(stack.grpc_address, before.request_id, stranger, watched)
    known = recommend(stack.grpc_address, stranger)
    assert not known.cold_start and known.ranked_by == pb.RANKED_BY_TRITON
    assert watched not in [item.item_id for item in known.items]


def _inference_count(metrics_url: str, model: str) -> float:
    """Requests to every family of the stage model ``model`` (its name plus a config digest)."""
    text = urllib.request.urlopen(metrics_url, timeout=5).read().decode()
    pattern = rf'^nv_inference_count\{{[^}}]*model="{model}_[0-9a-f]{{8}}"[^}}]*\}} ([0-9.e+]+)$'
    return sum(float(m.group(1)) for m in re.finditer(pattern, text, re.MULTILINE))


def _count_reaches(metrics_url: str, model: str, target: float, timeout: float = 10.0) -> float:
    """Triton refreshes its counters periodically: poll until the count reaches ``target``."""
    deadline = time.monotonic() + timeout
    while (count := _inference_count(metrics_url, model)) < target and time.monotonic() < deadline:
        time.sleep(0.25)
    return count


def _cache_lookups(metrics_url: str, source: str, result: str) -> float:
    text = urllib.request.urlopen(metrics_url, timeout=5).read().decode()
    found = re.search(rf'^cinesync_encoder_cache_lookups_total\{{result="{result}",source="{source}"\}} ([0-9.e+]+)$',
                      text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def _wait_for_lookups(metrics_url: str, source: str, result: str, target: float, timeout: float = 10.0) -> float:
    deadline = time.monotonic() + timeout
    while (count := _cache_lookups(metrics_url, source, result)) < target and time.monotonic() < deadline:
        time.sleep(0.05)
    return count


def test_a_group_is_ranked_by_triton_as_the_offline_aggregation(
    served: tuple[Stack, dict[str, Any]], dataset: InteractionDataset
) -> None:
    """RecommendGroup: every member's candidates ranked for every member in Triton and aggregated,
    the same list the offline group evaluation computes from the run (within float noise)."""
    stack, result = served
    run = load_run(Path(result["run_dir"]))
    members = np.array([10, 11, 12])
    wait_for_version(stack.grpc_address, dataset.user_ids[10], result["version"], timeout=60)
    with grpc.insecure_channel(stack.grpc_address) as channel:
        response = pb_grpc.RecommendationServiceStub(channel).RecommendGroup(pb.GroupRecommendRequest(
            members=[pb.GroupMember(user_id=run.user_ids[m]) for m in members], k=10), timeout=10)
    assert response.ranked_by == pb.RANKED_BY_TRITON and not response.degraded and not response.cold_start
    served_ids = [item.item_id for item in response.items]
    offline_ids = [run.items[i].item_id for i in GroupRanker.of_run(run, run.protocol.test).group(members)
                   .aggregated(10, tilt=run.manifest["groups"]["tilt"])]
    assert len(set(served_ids) & set(offline_ids)) >= 9, (served_ids, offline_ids)
    seen = {run.items[i].item_id for m in members for i in run.history.train_sequences[m]}
    assert len(served_ids) == 10 and not seen & set(served_ids)


def test_a_request_whose_history_is_encoded_already_is_one_triton_execution(
    served: tuple[Stack, dict[str, Any]], dataset: InteractionDataset
) -> None:
    """Each Recommend is one request to the composed ranker; its user's vectors, encoded once, come
    from the encoder cache afterwards, so the encoders are not asked again."""
    stack, result = served
    metrics_url = stack.addresses["triton metrics"]
    user = dataset.user_ids[1]
    wait_for_version(stack.grpc_address, user, result["version"], timeout=60)
    recommend(stack.grpc_address, user)  # encoded now, if it was not before
    ranked = _count_reaches(metrics_url, RANKER, 1.0)
    time.sleep(2.5)  # past Triton's metrics interval (2 s): the counts include every request so far
    ranked, encoded = _inference_count(metrics_url, RANKER), _inference_count(metrics_url, ENCODERS)
    for _ in range(5):
        assert recommend(stack.grpc_address, user).ranked_by == pb.RANKED_BY_TRITON
    assert _count_reaches(metrics_url, RANKER, ranked + 5) == ranked + 5
    assert _inference_count(metrics_url, ENCODERS) == encoded


def _prometheus_query(base: str, query: str) -> list[dict[str, Any]]:
    url = f"{base}/api/v1/query?{urllib.parse.urlencode({'query': query})}"
    reply = json.loads(urllib.request.urlopen(url, timeout=5).read())
    assert reply["status"] == "success", reply
    return list(reply["data"]["result"])


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="no prometheus binary (make setup installs it as root)")
def test_prometheus_scrapes_the_control_plane_and_triton(
    served: tuple[Stack, dict[str, Any]], dataset: InteractionDataset, tmp_path: Path
) -> None:
    """A real Prometheus scrapes the running stack; the series come back through its HTTP API."""
    stack, result = served
    targets = {name: urllib.parse.urlparse(stack.addresses[name]).netloc
               for name in ("control plane metrics", "triton metrics")}
    config = tmp_path / "prometheus.yml"
    config.write_text(json.dumps({  # JSON is YAML
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": "control-plane", "static_configs": [{"targets": [targets["control plane metrics"]]}]},
                           {"job_name": "triton", "static_configs": [{"targets": [targets["triton metrics"]]}]}],
        "rule_files": [str(RULES)],
    }))
    port = free_port()
    prometheus = ManagedProcess(
        "prometheus", ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
                       f"--web.listen-address=127.0.0.1:{port}"], log_path=tmp_path / "prometheus.log",
    )
    base = f"http://127.0.0.1:{port}"
    try:
        prometheus.wait_ready(lambda: urllib.request.urlopen(f"{base}/-/ready", timeout=1).status == 200, timeout=30)
        wait_for_version(stack.grpc_address, dataset.user_ids[2], result["version"], timeout=60)
        for _ in range(5):
            answer = recommend(stack.grpc_address, dataset.user_ids[2])
        record_feedback(stack.grpc_address, answer.request_id, dataset.user_ids[2], answer.items[-1].item_id)
        deadline = time.monotonic() + 30
        wanted = {
            "ranked requests": 'cinesync_recommend_requests_total{outcome="triton"}',
            "ranking stage": 'cinesync_stage_latency_seconds_count{stage="ranking"}',
            "Triton calls": "cinesync_triton_call_seconds_count",
            "index size": "cinesync_index_items",
            "job queue depth": "cinesync_job_queue_depth",
            "ranker executions": 'nv_inference_exec_count{model=~"ranker_.*"}',
            "encoder cache lookups": 'cinesync_encoder_cache_lookups_total{source="live"}',
            "exposures by version": f'cinesync_exposures_total{{version="{result["version"]}"}}',
            "watches by version": f'cinesync_feedback_events_total{{kind="watch",version="{result["version"]}"}}',
            "quality window": f'cinesync_quality_window_answers{{version="{result["version"]}"}}',
            "answers (recorded rule)": "cinesync:answers:rate5m",
        }
        found: dict[str, list[dict[str, Any]]] = {}
        while time.monotonic() < deadline and len(found) < len(wanted):
            found = {name: series for name, query in wanted.items() if (series := _prometheus_query(base, query))}
            time.sleep(0.5)
        assert set(found) == set(wanted), f"missing: {set(wanted) - set(found)}"
        assert float(found["ranked requests"][0]["value"][1]) >= 5
        assert {s["metric"]["job"] for s in _prometheus_query(base, "up == 1")} == {"control-plane", "triton"}
        with urllib.request.urlopen(f"{base}/api/v1/rules", timeout=5) as reply:
            groups = {g["name"]: g for g in json.load(reply)["data"]["groups"]}
        assert set(groups) == {"cinesync-recording", "cinesync-alerts"}
        assert {r["health"] for g in groups.values() for r in g["rules"]} <= {"ok", "unknown"}
    finally:
        prometheus.stop()


def _humanize(value: float) -> str:
    """Prometheus' ``humanize`` template function for 0.001 <= value < 1000."""
    return f"{value * 1000:.4g}m" if value < 1 else f"{value:.4g}"


def _drift(metrics_url: str, version: int) -> dict[str, float]:
    text = urllib.request.urlopen(metrics_url, timeout=5).read().decode()
    return {sample.labels["feature"]: sample.value for family in text_string_to_metric_families(text)
            if family.name == "cinesync_drift_psi" for sample in family.samples
            if sample.labels["version"] == str(version)}


def test_drift_stays_low_for_the_published_traffic_and_alerts_when_answers_shift(
    served: tuple[Stack, dict[str, Any]], dataset: InteractionDataset, tmp_path: Path
) -> None:
    """Known users asking as usual keep every drift gauge low (below 0.2; 0.03 at most on ML-100k);
    requests sending short histories of the least-watched titles shift what the models read (history
    length, past 2 on ML-100k; whether the answers' score and popularity move too depends on the fit:
    about 0.2 on one machine's, 0.02 on another's), and the alert rule fires on the scraped figures in
    promtool's test."""
    stack, result = served
    version, metrics_url = result["version"], stack.addresses["control plane metrics"]
    wait_for_version(stack.grpc_address, dataset.user_ids[0], version, timeout=60)
    with grpc.insecure_channel(stack.grpc_address) as channel:
        call = pb_grpc.RecommendationServiceStub(channel).Recommend
        for user in dataset.user_ids[:400]:
            call(pb.RecommendRequest(user_id=user, k=10), timeout=10)
        usual = _drift(metrics_url, version)
        counts = np.bincount(dataset.item_idx, minlength=dataset.n_items)
        rare = [dataset.items[i].item_id for i in np.argsort(counts, kind="stable") if counts[i] > 0][:40]
        for n in range(1200):  # the window then holds mostly these
            call(pb.RecommendRequest(user_id=f"drift-{n}", k=10, history=rare[n % 38: n % 38 + 2]), timeout=10)
        shifted = _drift(metrics_url, version)
    print(f"drift of version {version}: usual traffic {usual}, shifted {shifted}")
    assert set(usual) == {"score", "history_length", "popularity"} and max(usual.values()) < 0.2, usual
    assert shifted["history_length"] > 0.2, shifted  # what the answers do with such histories depends on the fit
    # The scraped gauges (to two decimals), held for 20 minutes, in a promtool test of the shipped rule.
    held = {feature: round(value, 2) for feature, value in shifted.items()}
    series = [{"series": f'cinesync_drift_psi{{version="{version}",feature="{feature}"}}', "values": f"{value}x20"}
              for feature, value in held.items()]
    firing = [{"exp_labels": {"severity": "warning", "version": str(version), "feature": feature},
               "exp_annotations": {
                   "summary": f"Version {version}'s served {feature} drifted from its publish-time reference",
                   "description": f"Population stability index {_humanize(value)} (Evidently: above 0.2 is a "
                                  "significant change)."}}
              for feature, value in sorted(held.items()) if value > 0.2]
    unit = tmp_path / "drift.test.yml"
    unit.write_text(json.dumps({"rule_files": [str(RULES)], "evaluation_interval": "1m", "tests": [{
        "interval": "1m", "input_series": series,
        "alert_rule_test": [{"alertname": "CineSyncDriftSignificant", "eval_time": "15m", "exp_alerts": firing}],
    }]}))
    promtool = subprocess.run(["promtool", "test", "rules", str(unit)], capture_output=True, text=True, check=False)
    assert promtool.returncode == 0, promtool.stdout + promtool.stderr


def test_admin_starts_a_training_job_and_streams_its_progress(served: tuple[Stack, dict[str, Any]]) -> None:
    """StartTraining through the AdminService runs the pipeline on the Celery worker and streams its
    progress to the end; ListJobs shows it; bad options are refused before any work."""
    stack, _ = served
    token = (("authorization", f"Bearer {stack.settings.admin_token_file.read_text().strip()}"),)
    request = admin.TrainingRequest(data=SMALL_SYNTHETIC, options={"two_tower.epochs": "2", "dcn_fusion.epochs": "2"})
    with grpc.insecure_channel(stack.grpc_address) as channel:
        stub = admin_grpc.AdminServiceStub(channel)
        updates = list(stub.StartTraining(request, timeout=300, metadata=token))
        assert updates[-1].state == "SUCCESS" and "cascade" in json.loads(updates[-1].result_json)["metrics"]
        assert any(u.state == "PROGRESS" and "epoch" in u.message for u in updates)
        assert len({u.job_id for u in updates}) == 1
        jobs = stub.ListJobs(admin.ListJobsRequest(), timeout=30, metadata=token).jobs
        assert (jobs[0].job_id, jobs[0].state) == (updates[-1].job_id, "SUCCESS")
        with pytest.raises(grpc.RpcError) as bad:
            list(stub.StartTraining(admin.TrainingRequest(data=SMALL_SYNTHETIC, options={"epochs": "2"}),
                                    timeout=30, metadata=token))
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "KIND.PARAM" in (bad.value.details() or "")
        with pytest.raises(grpc.RpcError) as anonymous:
            list(stub.StartTraining(request, timeout=30))
        assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_bad_inputs_get_invalid_argument(served: tuple[Stack, dict[str, Any]]) -> None:
    stack, _ = served
    with grpc.insecure_channel(stack.grpc_address) as channel:
        stub = pb_grpc.RecommendationServiceStub(channel)
        for request in (
            pb.RecommendRequest(user_id="1", k=0),
            pb.RecommendRequest(user_id="1", k=1001),
            pb.RecommendRequest(user_id="1", k=5, domain=9),
            pb.RecommendRequest(user_id="not an id!", k=5),
        ):
            with pytest.raises(grpc.RpcError) as error:
                stub.Recommend(request, timeout=5)
            assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert error.value.details()
        cold = stub.Recommend(pb.RecommendRequest(user_id="never-seen-user", k=7), timeout=5)
        assert cold.cold_start and len(cold.items) == 7 and cold.ranked_by == pb.RANKED_BY_POPULARITY


def test_health_and_reflection(served: tuple[Stack, dict[str, Any]]) -> None:
    stack, _ = served
    with grpc.insecure_channel(stack.grpc_address) as channel:
        health = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="cinesync.v1.RecommendationService"), timeout=5
        )
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        replies = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
        )
        names = {s.name for reply in replies for s in reply.list_services_response.service}
        assert "cinesync.v1.RecommendationService" in names
    # The containers' HEALTHCHECK (python -m control_plane.healthcheck) on this control plane and a closed port.
    port = int(stack.grpc_address.rpartition(":")[2])
    assert check(stack.settings.model_copy(update={"grpc_port": port})) == ""
    assert "UNAVAILABLE" in check(stack.settings.model_copy(update={"grpc_port": free_port()}))


def test_z_added_titles_are_recommended_without_retraining(
    served: tuple[Stack, dict[str, Any]], dataset: InteractionDataset, tmp_path: Path
) -> None:
    """A catalog update through the worker (new titles with metadata, no interactions) grows every
    kind of the served run from content and publishes it: the titles reach users' answers with their
    metadata. Runs after the tests that expect the first version to be current."""
    stack, result = served
    popular = np.argsort(-np.bincount(dataset.item_idx, minlength=dataset.n_items))[:3]
    new = {f"new-{dataset.items[i].item_id}": f"{dataset.items[i].title} (special edition)" for i in popular}
    titles = tmp_path / "titles.tsv"
    titles.write_text("item_id\ttitle\tgenres\tyear\tdomain\n" + "".join(
        f"{item_id}\t{title}\t{'|'.join(dataset.items[i].genres)}\t{dataset.items[i].year or ''}\t{dataset.items[i].domain}\n"
        for (item_id, title), i in zip(new.items(), popular, strict=True)))
    bad = tmp_path / "bad.tsv"
    bad.write_text("item_id\ttitle\tgenres\tyear\tdomain\nx1\tA title\tDrama\t1999\tpodcast\n")
    with pytest.raises(JobFailed, match=r"bad.tsv:2: domain must be one of movie, tv"):
        follow(catalog_update(app, result["run_dir"], str(bad)).apply_async(queue=stack.settings.job_queue),
               say=print, timeout=120)

    update = follow(catalog_update(app, result["run_dir"], str(titles)).apply_async(queue=stack.settings.job_queue),
                    say=print, timeout=600)
    assert update["fitted_on"] == "train" and update["version"] > result["version"]
    assert all(m["max_abs_error"] <= 1e-4 for m in update["onnx"])
    wait_for_version(stack.grpc_address, dataset.user_ids[0], update["version"], timeout=60)
    # Top 50: on an AMD EPYC of CI's kind the same seeded run ranks them 20th to 30th at best for most
    # of these users, on an Intel Xeon within the top 20 (main failed there at k=20 too).
    shown = {item.item_id: item.title for user in dataset.user_ids[:40]
             for item in recommend(stack.grpc_address, user, k=50).items if item.item_id in new}
    assert shown and all(new[item_id] == title for item_id, title in shown.items()), shown


def test_zz_triton_down_degrades_within_deadline(
    served: tuple[Stack, dict[str, Any]], dataset: InteractionDataset
) -> None:
    """Runs last in the module: it stops Triton."""
    stack, _ = served
    user = dataset.user_ids[2]
    triton = next(p for p in stack.started if p.name == "triton")
    triton.stop()
    started = time.perf_counter()
    response = recommend(stack.grpc_address, user, k=10, timeout=2.0)
    elapsed = time.perf_counter() - started
    assert response.degraded and response.ranked_by == pb.RANKED_BY_RETRIEVAL and elapsed < 2.0
    assert len(response.items) == 10 and "Triton" in response.degraded_reason
    assert np.all(np.diff([item.score for item in response.items]) <= 1e-6)
