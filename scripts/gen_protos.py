"""Regenerate the Python SDK's protobuf/gRPC code from protos/, or check that it is in sync.

    python scripts/gen_protos.py           # write clients/python/src/persona/v1/*_pb2*.py(i)
    python scripts/gen_protos.py --check   # exit 1 if the committed code differs from a fresh run

`buf build` resolves the module (buf.yaml) into an image; `grpc_tools.protoc` then generates from
that image with local plugins only (no remote registry is reachable here). mypy-protobuf writes
the .pyi stubs.
"""

from __future__ import annotations

import argparse
import difflib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT_ROOT = ROOT / "clients" / "python" / "src"
GENERATED_DIR = OUT_ROOT / "persona" / "v1"
PROTO_FILES = sorted(
    p.relative_to(ROOT / "protos").as_posix() for p in (ROOT / "protos").rglob("*.proto")
)
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")


def _bin(name: str) -> str:
    # Prefer the tool installed next to this interpreter (the project's .venv).
    candidate = Path(sys.executable).parent / name
    found = str(candidate) if candidate.exists() else shutil.which(name)
    if not found:
        sys.exit(f"{name} not found: install the dev dependencies (pip install -e '.[dev]')")
    return found


def generate(out_root: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        image = Path(tmp) / "image.binpb"
        subprocess.run([_bin("buf"), "build", "-o", str(image)], cwd=ROOT, check=True)
        plugin_dir = Path(sys.executable).parent
        cmd = [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"--descriptor_set_in={image}",
            f"--python_out={out_root}",
            f"--grpc_python_out={out_root}",
            f"--plugin=protoc-gen-mypy={plugin_dir / 'protoc-gen-mypy'}",
            f"--plugin=protoc-gen-mypy_grpc={plugin_dir / 'protoc-gen-mypy_grpc'}",
            f"--mypy_out={out_root}",
            f"--mypy_grpc_out={out_root}",
            *PROTO_FILES,
        ]
        subprocess.run(cmd, cwd=ROOT, check=True)


def _generated_files(root: Path) -> dict[str, str]:
    base = root / "persona" / "v1"
    return {
        p.name: p.read_text()
        for p in sorted(base.glob("*"))
        if p.is_file() and p.name.endswith(GENERATED_SUFFIXES)
    }


def check() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        fresh_root = Path(tmp)
        (fresh_root / "persona" / "v1").mkdir(parents=True)
        generate(fresh_root)
        fresh = _generated_files(fresh_root)
    committed = _generated_files(OUT_ROOT)
    problems = []
    for name in sorted(set(fresh) | set(committed)):
        if name not in committed:
            problems.append(f"missing: {name}")
        elif name not in fresh:
            problems.append(f"stale (no longer generated): {name}")
        elif fresh[name] != committed[name]:
            diff = difflib.unified_diff(
                committed[name].splitlines(), fresh[name].splitlines(), "committed", "fresh", n=1
            )
            problems.append(f"differs: {name}\n" + "\n".join(list(diff)[:20]))
    if problems:
        print("generated code is out of sync with protos/; run: python scripts/gen_protos.py")
        print("\n".join(problems))
        return 1
    print(f"generated code in sync ({len(fresh)} files)")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if committed code is stale")
    args = parser.parse_args()
    if args.check:
        return check()
    for stale in GENERATED_DIR.glob("*"):
        if stale.name.endswith(GENERATED_SUFFIXES):
            stale.unlink()
    generate(OUT_ROOT)
    print(f"generated {len(_generated_files(OUT_ROOT))} files into {GENERATED_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
