"""Cross-domain through the served path, with a real Triton and control plane: a run trained on the
movie-to-tv split, published, answers every test user's Recommend (domain TV, their movie history
only) with what the offline evaluation scored; a history without any known item gets popular TV."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cinesync.settings import Settings
from cinesync.v1 import recommendation_pb2 as pb
from cinesync.v1 import recommendation_pb2_grpc as pb_grpc
from conftest import small_pipeline
from exporters.onnx_export import export_run
from exporters.publish import publish
from launcher.client import wait_for_version
from launcher.served_eval import evaluate_served
from launcher.stack import Stack
from recsys.pipeline import CASCADE, evaluate, train
from recsys.run import load_run

pytestmark = pytest.mark.slow
TWO_DOMAINS = "synthetic:n_users=400,n_items=160,mean_interactions=24,tv_share=0.5,seed=11"


def test_served_cross_domain_answers_score_as_evaluated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import grpc

    # Served scores against offline ones: a busy CI machine may need more than the default 1 s per call.
    monkeypatch.setenv("CINESYNC_RANKING_TIMEOUT_S", "10")

    run_dir = train(TWO_DOMAINS, tmp_path / "runs", small_pipeline(split="movie-to-tv"))
    offline = evaluate(run_dir)
    assert offline["ease_transfer"]["ndcg@10"] > offline["popularity"]["ndcg@10"]
    run = load_run(run_dir)
    export_run(run, tmp_path / "onnx")
    settings = Settings(home=tmp_path / "home", model_repository=tmp_path / "repo", grpc_port=0, metrics_port=0,
                        bundle_poll_s=0.2)
    with Stack(settings, say=print) as stack:
        stack.ensure_triton()
        version = publish(run, tmp_path / "onnx", settings.model_copy(update={"triton_url": stack.triton_url}))
        stack.start_control_plane()
        wait_for_version(stack.grpc_address, run.user_ids[0], version, timeout=60)
        served = evaluate_served(stack.grpc_address, run_dir)
        assert served.ranked_by == {"triton": int(offline[CASCADE]["users"])}
        for metric in ("ndcg@10", "recall@20"):
            assert abs(served.metrics[metric] - offline[CASCADE][metric]) <= 0.005, (metric, served.metrics)
        with grpc.insecure_channel(stack.grpc_address) as channel:
            call = pb_grpc.RecommendationServiceStub(channel).Recommend
            cold = call(pb.RecommendRequest(user_id="somebody-new", k=5, domain=pb.DOMAIN_TV,
                                            history=["no-such-title"]), timeout=10)
    assert cold.cold_start and cold.ranked_by == pb.RANKED_BY_POPULARITY and len(cold.items) == 5
    assert all(item.domain == pb.DOMAIN_TV for item in cold.items)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["split"]["target_domain"] == "tv"
