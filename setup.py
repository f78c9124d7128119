"""Builds the gRPC code from protos/ whenever the package is built or installed (editable or not, any
extra), so a serving-only install has its stubs too; the rest of the metadata is in pyproject.toml."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
PROTOS = ["cinesync/v1/recommendation.proto", "cinesync/v1/admin.proto"]
GENERATED = ROOT / "cinesync" / "v1"


def generate_stubs() -> None:
    """cinesync/v1/*_pb2.py, *_pb2_grpc.py and *.pyi from protos/ (grpc_tools, pinned in build-system)."""
    from grpc_tools import protoc

    include = str(Path(protoc.__file__).parent / "_proto")
    args = ["protoc", f"-I{ROOT / 'protos'}", f"-I{include}", f"--python_out={ROOT}", f"--grpc_python_out={ROOT}",
            f"--pyi_out={ROOT}", *(str(ROOT / "protos" / p) for p in PROTOS)]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed on {', '.join(PROTOS)}")


class BuildPyWithStubs(build_py):
    """build_py that first generates the stubs, and puts them in the wheel when it is not editable."""

    def run(self) -> None:
        generate_stubs()
        super().run()
        if not self.editable_mode:
            target = Path(self.build_lib) / "cinesync" / "v1"
            target.mkdir(parents=True, exist_ok=True)
            for path in GENERATED.glob("*_pb2*.py*"):
                shutil.copy2(path, target / path.name)


setup(cmdclass={"build_py": BuildPyWithStubs})
