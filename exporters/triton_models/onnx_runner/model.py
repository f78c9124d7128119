"""Triton python-backend model that runs its version folder's model.onnx with ONNX Runtime.

It stands in for the onnxruntime backend, which the Triton bundled in nvidia-pytriton lacks.
Requests that dynamic batching gathered run as one ONNX Runtime call.
"""

import json
import os
import site

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        extra = config.get("parameters", {}).get("extra_sys_path", {}).get("string_value", "")
        for path in filter(None, extra.split(os.pathsep)):
            site.addsitedir(path)
        import onnxruntime as ort  # found through extra_sys_path: the stub runs Python isolated

        options = ort.SessionOptions()
        options.intra_op_num_threads = int(config.get("parameters", {}).get("threads", {}).get("string_value", "1"))
        folder = os.path.join(args["model_repository"], args["model_version"])
        self.session = ort.InferenceSession(
            os.path.join(folder, "model.onnx"), options, providers=["CPUExecutionProvider"]
        )
        self.inputs = [tensor["name"] for tensor in config["input"]]
        self.outputs = [tensor["name"] for tensor in config["output"]]

    def execute(self, requests):
        feeds = {
            name: np.concatenate([pb_utils.get_input_tensor_by_name(r, name).as_numpy() for r in requests])
            for name in self.inputs
        }
        results = self.session.run(self.outputs, feeds)
        sizes = [pb_utils.get_input_tensor_by_name(r, self.inputs[0]).as_numpy().shape[0] for r in requests]
        bounds = np.cumsum(sizes)[:-1]
        per_output = [np.split(result, bounds) for result in results]
        return [
            pb_utils.InferenceResponse([pb_utils.Tensor(name, parts[i]) for name, parts in zip(self.outputs, per_output)])
            for i in range(len(requests))
        ]
