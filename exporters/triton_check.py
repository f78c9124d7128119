"""Checks a serving version in a real Triton before it becomes current: loads its ensembles (and so
every pinned step) in explicit model-control mode, then sends one request to each step model at its
pinned version and one through each ensemble. Requests are derived from the configs' inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tritonclient.grpc as triton_grpc
from tritonclient.grpc import model_config_pb2 as mc
from tritonclient.utils import InferenceServerException

from cinesync import triton
from exporters.triton_repository import read_config

NUMPY_TYPES = {mc.TYPE_INT64: np.int64, mc.TYPE_FP32: np.float32}
TRITON_TYPES = {mc.TYPE_INT64: "INT64", mc.TYPE_FP32: "FP32"}


class VersionRejected(RuntimeError):
    """Triton could not load or run a candidate version; the message says which model and why."""


def _zero_request(config: mc.ModelConfig) -> list[triton_grpc.InferInput]:
    """One all-zero request (one candidate where the candidate count is free) for ``config``'s inputs."""
    inputs = []
    for tensor in config.input:
        shape = [1, *(max(dim, 1) for dim in tensor.dims)]
        infer_input = triton_grpc.InferInput(tensor.name, shape, TRITON_TYPES[tensor.data_type])
        infer_input.set_data_from_numpy(np.zeros(shape, dtype=NUMPY_TYPES[tensor.data_type]))
        inputs.append(infer_input)
    return inputs


def check_version(url: str, repository: Path, version: int, *, timeout: float = 120.0) -> list[str]:
    """Load ``version``'s ensembles (encode_<version> where there is one, then ranking_<version>)
    into the Triton at ``url`` and run one zero request through every model of them; returns the
    models checked. Raises VersionRejected (after unloading the ensembles) on failure."""
    names = [triton.encoder_ensemble(version), triton.ensemble_model(version)]
    ensembles = [read_config(Path(repository) / name / "config.pbtxt") for name in names
                 if (Path(repository) / name / "config.pbtxt").is_file()]
    client = triton_grpc.InferenceServerClient(url)
    checked: list[str] = []
    model = names[-1]
    try:
        for ensemble in ensembles:
            model = ensemble.name
            client.load_model(ensemble.name, client_timeout=timeout)
            for step in ensemble.ensemble_scheduling.step:
                model = f"{step.model_name} version {step.model_version}"
                config = read_config(Path(repository) / step.model_name / "config.pbtxt")
                client.infer(step.model_name, _zero_request(config), model_version=str(step.model_version),
                             client_timeout=timeout)
                checked.append(model)
            model = ensemble.name
            result = client.infer(ensemble.name, _zero_request(ensemble), client_timeout=timeout)
            for output in ensemble.output:
                values = result.as_numpy(output.name)
                if values is None or not np.isfinite(values).all():
                    raise VersionRejected(f"{ensemble.name} answered {values!r} for a zero request")
            checked.append(model)
    except (InferenceServerException, VersionRejected) as error:
        message = error.message() if isinstance(error, InferenceServerException) else str(error)
        for ensemble in ensembles:
            try:
                client.unload_model(ensemble.name, unload_dependents=False)
            except InferenceServerException:
                pass
        raise VersionRejected(f"version {version} failed in Triton at {url}, {model}: {message}") from error
    finally:
        client.close()
    return checked
