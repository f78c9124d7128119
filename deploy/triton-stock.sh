#!/usr/bin/env bash
# Serve a repository published with CINESYNC_TRITON_TARGET=stock from the stock Triton container.
set -euo pipefail
repository="$(realpath "${CINESYNC_MODEL_REPOSITORY:-model_repository}")"
image="${TRITON_IMAGE:-nvcr.io/nvidia/tritonserver:24.10-py3}"
exec docker run --rm ${TRITON_GPUS:+--gpus "$TRITON_GPUS"} -p 8000:8000 -p 8001:8001 -p 8002:8002 \
  -v "$repository:/models" "$image" \
  tritonserver --model-repository=/models --model-control-mode=explicit
