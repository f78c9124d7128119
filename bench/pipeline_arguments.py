"""The command-line arguments the pipeline benchmarks share: kinds' hyper-parameters and threads."""

from __future__ import annotations

import argparse
from typing import Any

import torch

from launcher.cli import pipeline_options


def add_pipeline_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--set", action="append", default=[], metavar="KIND.PARAM=VALUE",
                        help="a kind's hyper-parameter (repeatable)")
    parser.add_argument("--threads", type=int, default=2)


def kind_options(args: argparse.Namespace) -> dict[str, Any]:
    """The kinds' hyper-parameters from --set, after setting torch's threads from --threads."""
    torch.set_num_threads(args.threads)
    options: dict[str, Any] = pipeline_options(args.set).get("options", {})
    return options
