"""Layering: serving and the CLI import no torch, and the contracts package imports no role."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

ROLES = ("recsys", "workers", "exporters", "control_plane", "launcher", "federated", "console")


def imported_after(module: str) -> set[str]:
    """Top-level packages in sys.modules after importing ``module`` in a fresh interpreter."""
    code = f"import json, sys, {module}; print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(json.loads(out))


@pytest.mark.parametrize("module", ["control_plane.server", "launcher.cli", "workers.tasks", "exporters.lifecycle",
                                    "console.app"])
def test_serving_cli_task_definitions_and_lifecycle_import_no_torch(module: str) -> None:
    assert "torch" not in imported_after(module)


@pytest.mark.parametrize("role", ["control_plane.server", "console.app"])
def test_a_serving_role_imports_no_other_role(role: str) -> None:
    assert not imported_after(role) & {*ROLES} - {role.split(".")[0]}


@pytest.mark.parametrize("module", ["cinesync.settings", "cinesync.triton", "cinesync.bundle", "cinesync.versions",
                                    "cinesync.federation", "cinesync.drift"])
def test_contracts_import_no_role(module: str) -> None:
    assert not imported_after(module) & {*ROLES, "torch"}
