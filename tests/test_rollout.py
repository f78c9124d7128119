"""Publish version N+1 and roll back to N under concurrent load on loopback, with a real Triton and
control plane: no request fails, every answer is ranked by Triton and names the version that ranked
it. Then an export that cannot be composed is refused, a version Triton cannot run is rejected and
removed, and the current one stays."""

from __future__ import annotations

import collections
import json
import shutil
import time
from pathlib import Path

import onnx
import pytest
from onnx import helper

from cinesync import versions
from cinesync.bundle import current_version
from cinesync.settings import Settings
from cinesync.v1 import recommendation_pb2 as pb
from exporters.composition import CompositionFailed
from exporters.publish import publish
from exporters.test_lifecycle import clone_run
from exporters.triton_check import VersionRejected, check_version
from launcher.client import wait_for_version
from launcher.stack import Stack
from recsys.run import load_run
from tests.loopback import Load

pytestmark = pytest.mark.slow


def unrunnable(path: Path, source: Path) -> None:
    """Write ``source``'s model to ``path`` with an operator no runtime has after its output: valid
    ONNX (the checker accepts an unknown domain), refused by ONNX Runtime, so by Triton."""
    model = onnx.load(source)
    result = model.graph.output[0].name
    for node in model.graph.node:
        node.output[:] = [f"{name}_before" if name == result else name for name in node.output]
    model.graph.node.append(helper.make_node("Nope", [f"{result}_before"], [result], domain="cinesync.broken"))
    model.opset_import.append(helper.make_opsetid("cinesync.broken", 1))
    onnx.save(model, path)


def test_publish_and_rollback_under_load_fail_no_request(
    small_run: Path, exported_run: Path, tmp_path: Path
) -> None:
    settings = Settings(home=tmp_path / "home", model_repository=tmp_path / "repo", grpc_port=0, metrics_port=0,
                        bundle_poll_s=0.2)
    repository, serving = settings.model_repository.resolve(), settings.serving_dir
    second = load_run(clone_run(small_run, tmp_path / "second-run"))
    with Stack(settings, say=print) as stack:
        stack.ensure_triton()
        publishing = settings.model_copy(update={"triton_url": stack.triton_url})
        first = publish(load_run(small_run), exported_run, publishing)
        stack.start_control_plane()
        users = json.loads((serving / str(first) / "users.json").read_text())
        wait_for_version(stack.grpc_address, users[0], first, timeout=60)
        with Load(stack.grpc_address, users) as load:
            time.sleep(1.0)
            newer = publish(second, exported_run, publishing)
            load.wait_for(str(newer))
            time.sleep(1.0)
            assert versions.rollback(repository, serving) == (newer, first)
            rolled_back = load.wait_for(str(first))
            time.sleep(1.0)
        third = load_run(clone_run(small_run, tmp_path / "third-run"))
        broken = tmp_path / "broken-onnx"
        shutil.copytree(exported_run, broken)
        (broken / "fusion.onnx").write_bytes(b"not an onnx model")
        with pytest.raises(CompositionFailed, match="fusion.onnx is not a loadable ONNX model"):
            publish(third, broken, publishing)
        unrunnable(broken / "fusion.onnx", exported_run / "fusion.onnx")
        with pytest.raises(VersionRejected, match=r"version \d+ failed in Triton"):
            publish(third, broken, publishing)
        assert versions.whole_versions(repository, serving) == [first, newer] and current_version(serving) == first
        assert len(check_version(stack.triton_url, repository, first)) == 4  # each stage model and its ensemble
    assert load.failures == []
    by_version = collections.Counter(v for _, v, _ in load.answers)
    assert set(by_version) == {str(first), str(newer)} and min(by_version.values()) > 10, by_version
    # Every answer ranked by Triton: a switch never leaves a version unloaded or half-loaded. On a machine
    # the other tests load, an answer may still miss the ranking deadline while Triton loads a version.
    assert all("did not answer within" in reason for _, reason in load.degraded), load.degraded[:3]
    ranked = sum(r == pb.RANKED_BY_TRITON for _, _, r in load.answers)
    assert ranked >= 0.95 * len(load.answers), f"{len(load.answers) - ranked} of {len(load.answers)} not ranked by Triton"
    assert all(v == str(first) for t, v, _ in load.answers if t > rolled_back + 0.5), "switched back and forth"
