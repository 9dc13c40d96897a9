"""Regenerate the SDKs' protobuf/gRPC code from protos/ (Python, Go, TypeScript), or check it.

    python scripts/gen_protos.py           # rewrite the generated code of all three SDKs
    python scripts/gen_protos.py --check   # exit 1 if any committed file differs from a fresh run

`buf build` resolves the module (buf.yaml) into an image once; every language is generated from
that image with local plugins only (no remote registry is reachable here):
- Python: `grpc_tools.protoc --descriptor_set_in=<image>`; mypy-protobuf writes the .pyi stubs.
- Go: `buf generate <image>` with clients/go/buf.gen.yaml and protoc-gen-go / protoc-gen-go-grpc
  from .tools/bin (`make setup-sdks` installs them at pinned versions).
- TypeScript: `buf generate` with clients/typescript/buf.gen.yaml and the protoc-gen-es of
  clients/typescript/node_modules (`npm ci`), from the image and from the vendored
  google/rpc/error_details.proto the TypeScript SDK reads status details with.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GO_TOOLS = ROOT / ".tools" / "bin"
TS_DIR = ROOT / "clients" / "typescript"
TS_TOOLS = TS_DIR / "node_modules" / ".bin"
PROTO_FILES = sorted(
    p.relative_to(ROOT / "protos").as_posix() for p in (ROOT / "protos").rglob("*.proto")
)


def _bin(name: str) -> str:
    # Prefer the tool installed next to this interpreter (the project's .venv).
    candidate = Path(sys.executable).parent / name
    found = str(candidate) if candidate.exists() else shutil.which(name)
    if not found:
        sys.exit(f"{name} not found: install the dev dependencies (pip install -e '.[dev]')")
    return found


def _plugin(directory: Path, name: str) -> Path:
    path = directory / name
    if not path.exists():
        sys.exit(f"{path.relative_to(ROOT)} not found: run `make setup-sdks`")
    return path


def _generate_python(image: Path, base: Path) -> None:
    out_root = base / "clients" / "python" / "src"
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


def _buf_generate(inputs: list[str], template: str, base: Path, plugin_dir: Path) -> None:
    # The templates name their plugins (`local: protoc-gen-go`); the project's own copies come
    # first on PATH so that a different version installed elsewhere is never picked up.
    env = {**os.environ, "PATH": f"{plugin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    for source in inputs:
        subprocess.run(
            [_bin("buf"), "generate", source, "--template", template, "-o", str(base)],
            cwd=ROOT,
            env=env,
            check=True,
        )


def _go_module_version(module: str) -> str:
    match = re.search(
        rf"^\s*(?:require\s+)?{re.escape(module)}\s+(\S+)",
        (ROOT / "clients" / "go" / "go.mod").read_text(),
        re.MULTILINE,
    )
    if not match:
        sys.exit(f"clients/go/go.mod does not require {module}")
    return match.group(1)


def _generate_go(image: Path, base: Path) -> None:
    plugin = _plugin(GO_TOOLS, "protoc-gen-go")
    _plugin(GO_TOOLS, "protoc-gen-go-grpc")
    # Code from protoc-gen-go vX needs the google.golang.org/protobuf runtime >= vX: the plugin
    # and the SDK's go.mod must name the same version (the Makefile reads it from go.mod).
    have = subprocess.run(
        [str(plugin), "--version"], capture_output=True, text=True, check=True
    ).stdout.split()[-1]
    want = _go_module_version("google.golang.org/protobuf")
    if have != want:
        sys.exit(
            f"protoc-gen-go is {have} but clients/go/go.mod needs {want}: run `make setup-sdks`"
        )
    _buf_generate([str(image)], "clients/go/buf.gen.yaml", base, GO_TOOLS)


def _generate_typescript(image: Path, base: Path) -> None:
    _plugin(TS_TOOLS, "protoc-gen-es")
    _buf_generate(
        [str(image), "clients/typescript/proto"], "clients/typescript/buf.gen.yaml", base, TS_TOOLS
    )


@dataclass(frozen=True)
class Language:
    name: str
    generate: Callable[[Path, Path], None]  # (image, base directory to write under)
    out_dir: str  # where its generated files live, relative to the base
    suffixes: tuple[str, ...]  # which files there are generated

    def files(self, base: Path) -> dict[str, str]:
        root = base / self.out_dir
        return {
            p.relative_to(root).as_posix(): p.read_text()
            for p in sorted(root.rglob("*"))
            if p.is_file() and p.name.endswith(self.suffixes)
        }


LANGUAGES = (
    Language(
        "python",
        _generate_python,
        "clients/python/src/persona/v1",
        ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi"),
    ),
    Language("go", _generate_go, "clients/go/gen", (".pb.go",)),
    Language("typescript", _generate_typescript, "clients/typescript/src/gen", ("_pb.ts",)),
)


def _generate_all(base: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        image = Path(tmp) / "image.binpb"
        subprocess.run([_bin("buf"), "build", "-o", str(image)], cwd=ROOT, check=True)
        for language in LANGUAGES:
            (base / language.out_dir).mkdir(parents=True, exist_ok=True)
            language.generate(image, base)


def check() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        fresh_base = Path(tmp)
        _generate_all(fresh_base)
        problems = []
        counts = []
        for language in LANGUAGES:
            fresh = language.files(fresh_base)
            committed = language.files(ROOT)
            counts.append(f"{len(fresh)} {language.name}")
            for name in sorted(set(fresh) | set(committed)):
                where = f"{language.out_dir}/{name}"
                if name not in committed:
                    problems.append(f"missing: {where}")
                elif name not in fresh:
                    problems.append(f"stale (no longer generated): {where}")
                elif fresh[name] != committed[name]:
                    diff = difflib.unified_diff(
                        committed[name].splitlines(),
                        fresh[name].splitlines(),
                        "committed",
                        "fresh",
                        n=1,
                    )
                    problems.append(f"differs: {where}\n" + "\n".join(list(diff)[:20]))
    if problems:
        print("generated code is out of sync with protos/; run: make protos")
        print("\n".join(problems))
        return 1
    print(f"generated code in sync ({', '.join(counts)} files)")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if committed code is stale")
    args = parser.parse_args()
    if args.check:
        return check()
    for language in LANGUAGES:
        for stale in language.files(ROOT):
            (ROOT / language.out_dir / stale).unlink()
    _generate_all(ROOT)
    for language in LANGUAGES:
        count = len(language.files(ROOT))
        print(f"generated {count} {language.name} files into {language.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
