"""The machine a benchmark ran on, as its results name it."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_model() -> str:
    """The processor's model name (/proc/cpuinfo), "" where unknown."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return ""
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "")


def machine() -> str:
    """Architecture, processor model and core count, e.g. "x86_64 Intel(R) Xeon(R) Processor, 2 cores"."""
    return f"{platform.machine()} {cpu_model()}, {os.cpu_count()} cores"
