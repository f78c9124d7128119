"""Triton python-backend model: (user, item) index rows -> dense ranking features.

The exporter copies recsys/feature_assembly.py beside this file, so serving computes the same
features as training, from the lookup tables (tables.npz) of the same training run.
"""

import json
import os
import site
import sys

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        extra = config.get("parameters", {}).get("extra_sys_path", {}).get("string_value", "")
        for path in filter(None, extra.split(os.pathsep)):
            site.addsitedir(path)
        folder = os.path.join(args["model_repository"], args["model_version"])
        sys.path.insert(0, folder)
        import feature_assembly  # copied beside this file by the exporter

        self.assemble = feature_assembly.assemble_dense
        self.tables = feature_assembly.FeatureTables.load(folder)
        self.n_users = self.tables.user_genre_affinity.shape[0]
        self.n_items = self.tables.item_genres.shape[0]
        # Tensor names come from the config the exporter wrote: (user, item) inputs, one output.
        self.user_input, self.item_input = (tensor["name"] for tensor in config["input"])
        self.output = config["output"][0]["name"]

    def execute(self, requests):
        responses = []
        for request in requests:
            users = pb_utils.get_input_tensor_by_name(request, self.user_input).as_numpy().reshape(-1)
            items = pb_utils.get_input_tensor_by_name(request, self.item_input).as_numpy().reshape(-1)
            if users.size and (users.min() < 0 or users.max() >= self.n_users):
                error = pb_utils.TritonError(f"{self.user_input} out of range [0, {self.n_users})")
                responses.append(pb_utils.InferenceResponse(error=error))
                continue
            if items.size and (items.min() < 0 or items.max() >= self.n_items):
                error = pb_utils.TritonError(f"{self.item_input} out of range [0, {self.n_items})")
                responses.append(pb_utils.InferenceResponse(error=error))
                continue
            dense = self.assemble(self.tables, users, items)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor(self.output, dense)]))
        return responses
