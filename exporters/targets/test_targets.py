"""Export targets: the Triton configs each writes, and the TensorRT engine build's settings
(checked against a recording stand-in for the tensorrt module, which cannot be installed here)."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import pytest
from tritonclient.grpc import model_config_pb2 as mc

from cinesync import triton
from exporters.composition import StageModel
from exporters.export_report import Tensor
from exporters.targets import TARGETS, TargetUnavailable, export_target
from exporters.targets.tensorrt_plan import WORKSPACE_BYTES, build_engine, cuda_gpus
from exporters.triton_repository import Scheduling, stage_config


def ranker_config(target: Any, precision: str = "fp32") -> mc.ModelConfig:
    """The config of a ranking stage reading a history and candidates."""
    inputs = [Tensor(triton.HISTORY, "INT64", [200]), Tensor(triton.ITEMS, "INT64", [-1])]
    model = StageModel(triton.RANKER, Path("ranker.onnx"), inputs, [Tensor(triton.SCORE, "FP32", [-1])], precision)
    return stage_config(model, target)


def test_registry_lists_the_targets_and_rejects_unknown_ones() -> None:
    assert set(TARGETS) == {"python", "stock", "tensorrt"}
    with pytest.raises(ValueError, match="unknown Triton target 'openvino'; known: python, stock, tensorrt"):
        export_target("openvino")


@pytest.mark.parametrize(("precision", "mode"), [("fp32", "FP16"), ("int8", "INT8")])
def test_stock_target_accelerates_onnxruntime_with_tensorrt(precision: Any, mode: str) -> None:
    config = ranker_config(export_target("stock"), precision)
    assert config.platform == "onnxruntime_onnx" and not config.backend and not config.instance_group
    (accelerator,) = config.optimization.execution_accelerators.gpu_execution_accelerator
    assert accelerator.name == "tensorrt" and accelerator.parameters["precision_mode"] == mode


def test_python_target_runs_on_the_cpu_in_the_python_backend() -> None:
    config = ranker_config(export_target("python"))
    assert config.backend == "python" and config.instance_group[0].kind == mc.ModelInstanceGroup.KIND_CPU
    assert not config.optimization.execution_accelerators.gpu_execution_accelerator


def test_tensorrt_target_writes_plan_models_on_the_gpu() -> None:
    config = ranker_config(export_target("tensorrt"), "int8")
    assert config.platform == "tensorrt_plan" and config.default_model_filename == "model.plan"
    assert config.instance_group[0].kind == mc.ModelInstanceGroup.KIND_GPU


@pytest.mark.skipif(cuda_gpus() > 0, reason="this machine has a GPU")
def test_tensorrt_target_says_what_is_missing() -> None:
    with pytest.raises(TargetUnavailable, match="no CUDA GPU is visible.*CINESYNC_TRITON_TARGET=stock"):
        export_target("tensorrt").check_available()


INPUTS = [(triton.HISTORY_INPUT, (-1, 200)), (triton.ITEMS_INPUT, (-1, -1))]


class _Recorder:
    """Stands in for the tensorrt module: records what build_engine configures."""

    def __init__(self) -> None:
        self.flags: list[str] = []
        self.shapes: dict[str, tuple[tuple[int, ...], ...]] = {}
        self.workspace: int | None = None
        self.profiles: list[object] = []
        self.BuilderFlag = types.SimpleNamespace(FP16="FP16", INT8="INT8")
        self.MemoryPoolType = types.SimpleNamespace(WORKSPACE="WORKSPACE")
        recorder = self

        class Logger:
            WARNING = 0

            def __init__(self, level: int) -> None: ...

        class Network:
            num_inputs = 2

            def get_input(self, i: int) -> Any:
                return types.SimpleNamespace(name=INPUTS[i][0], shape=INPUTS[i][1])

        class Profile:
            def set_shape(self, name: str, *shapes: tuple[int, ...]) -> None:
                recorder.shapes[name] = shapes

        class Config:
            def set_memory_pool_limit(self, pool: str, size: int) -> None:
                recorder.workspace = size

            def set_flag(self, flag: str) -> None:
                recorder.flags.append(flag)

            def add_optimization_profile(self, profile: Profile) -> None:
                recorder.profiles.append(profile)

        class Builder:
            def __init__(self, logger: object) -> None: ...
            def create_network(self, flags: int) -> Network:
                return Network()

            def create_builder_config(self) -> Config:
                return Config()

            def create_optimization_profile(self) -> Profile:
                return Profile()

            def build_serialized_network(self, network: Network, config: Config) -> bytes:
                return b"engine"

        class OnnxParser:
            num_errors = 0

            def __init__(self, network: Network, logger: object) -> None: ...
            def parse(self, data: bytes) -> bool:
                return data.startswith(b"onnx")

        self.Logger, self.Builder, self.OnnxParser = Logger, Builder, OnnxParser


def test_engine_build_sets_precision_flags_and_a_batch_profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = _Recorder()
    monkeypatch.setitem(sys.modules, "tensorrt", recorder)
    (tmp_path / "m.onnx").write_bytes(b"onnx model")
    build_engine(tmp_path / "m.onnx", tmp_path / "model.plan", precision="int8", max_batch=4096)
    assert recorder.flags == ["FP16", "INT8"] and (tmp_path / "model.plan").read_bytes() == b"engine"
    assert recorder.shapes == {  # the batch axis from 1 to max_batch; the candidate axis from 1 to MAX_CANDIDATES
        triton.HISTORY_INPUT: ((1, 200), (256, 200), (4096, 200)),
        triton.ITEMS_INPUT: ((1, 1), (256, 256), (4096, triton.MAX_CANDIDATES)),
    }
    assert recorder.workspace == WORKSPACE_BYTES and len(recorder.profiles) == 1
    recorder.flags.clear()
    build_engine(tmp_path / "m.onnx", tmp_path / "model.plan", precision="fp32", max_batch=128)
    assert recorder.flags == ["FP16"] and recorder.shapes[triton.HISTORY_INPUT] == ((1, 200), (128, 200), (128, 200))
    (tmp_path / "bad.onnx").write_bytes(b"garbage")
    with pytest.raises(RuntimeError, match="TensorRT cannot parse bad.onnx"):
        build_engine(tmp_path / "bad.onnx", tmp_path / "x.plan", precision="fp32", max_batch=8)


@pytest.mark.skipif(cuda_gpus() > 0, reason="this machine has a GPU")
def test_publishing_to_an_unavailable_target_fails_before_taking_a_number(
    small_run: Path, exported_run: Path, tmp_path: Path
) -> None:
    from cinesync.settings import Settings
    from exporters.publish import publish
    from recsys.run import load_run

    settings = Settings(home=tmp_path, model_repository=tmp_path / "repo", triton_target="tensorrt")
    with pytest.raises(TargetUnavailable, match="needs TensorRT and a GPU"):
        publish(load_run(small_run), exported_run, settings)
    assert not (tmp_path / "repo").exists() and not list(settings.serving_dir.glob("[0-9]*"))


def test_scheduling_is_written_into_the_stage_configs() -> None:
    inputs = [Tensor(triton.HISTORY, "INT64", [200]), Tensor(triton.ITEMS, "INT64", [-1])]
    model = StageModel(triton.RANKER, Path("ranker.onnx"), inputs, [Tensor(triton.SCORE, "FP32", [-1])], "fp32")
    config = stage_config(model, export_target("python"), Scheduling(instances=2, queue_delay_us=300))
    assert [group.count for group in config.instance_group] == [2]
    assert config.dynamic_batching.max_queue_delay_microseconds == 300
    stock = stage_config(model, export_target("stock"), Scheduling(instances=2, queue_delay_us=300))
    assert not stock.instance_group  # the stock container places its instances itself
