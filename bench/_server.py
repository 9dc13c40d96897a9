"""Shared benchmark helpers: a Persona server in a subprocess, and percentiles.

The server always runs in the offline configuration, whatever the caller's environment or a
`.env` file says: it starts in an empty temporary working directory (so no `.env` is read),
with every `PERSONA_*` variable removed and only the ones below set, on a fresh data directory,
listening on a free loopback port in open (keyless) mode.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from argparse import ArgumentParser
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

import grpc
from grpc_health.v1 import health_pb2

SERVICE = "persona.v1.MemoryService"
STARTUP_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 20.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def offline_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The caller's environment without any `PERSONA_*` setting, then offline settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERSONA_")}
    env.update(
        {
            "PERSONA_API_KEYS": "",
            "PERSONA_LLM_MODEL": "",
            "PERSONA_LLM_BASE_URL": "",
            "PERSONA_LLM_API_KEY": "",
            "PERSONA_EMBEDDINGS_BASE_URL": "",
            "PERSONA_EMBEDDINGS_MODEL": "",
            "PERSONA_EMBEDDINGS_API_KEY": "",
            "PERSONA_OTEL_EXPORTER": "none",
            "PERSONA_LOG_LEVEL": "WARNING",
            "PERSONA_SHUTDOWN_GRACE_S": "5",
        }
    )
    env.update(extra or {})
    return env


def _serve_command(listen: str, data_dir: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "persona_server.cli.main",
        "serve",
        "--listen",
        listen,
        "--data-dir",
        str(data_dir),
    ]


class ServerProcess:
    """`with ServerProcess() as server:` starts a server and waits until health says SERVING;
    leaving the block stops it (SIGTERM, then SIGKILL) and removes its temporary directory."""

    def __init__(
        self,
        *,
        store: str = "sqlite",
        extra_env: Mapping[str, str] | None = None,
        startup_timeout_s: float = STARTUP_TIMEOUT_S,
        data_dir: Path | None = None,
    ) -> None:
        """`data_dir`: keep the store there (not removed at stop), so that one data directory
        can outlive several server processes (restarts, kill -9); default a fresh temporary
        one."""
        self.store = store
        self._extra_env = dict(extra_env or {})
        self._data_dir = data_dir  # None: a fresh one in the temporary directory
        self._startup_timeout_s = startup_timeout_s
        self._tmp: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: Path | None = None
        self.port = 0

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self._proc is not None, "server not started"
        return self._proc.pid

    def start(self) -> None:
        self._tmp = Path(tempfile.mkdtemp(prefix="persona-bench-"))
        cwd = self._tmp / "cwd"
        data_dir = self._data_dir or self._tmp / "data"
        cwd.mkdir()
        self._log = self._tmp / "server.log"
        self.port = free_port()
        listen = f"127.0.0.1:{self.port}"
        env = offline_env(
            {
                "PERSONA_LISTEN": listen,
                "PERSONA_DATA_DIR": str(data_dir),
                "PERSONA_STORE": self.store,
                **self._extra_env,
            }
        )
        with self._log.open("wb") as log:
            self._proc = subprocess.Popen(
                _serve_command(listen, data_dir),
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            self._wait_serving()
        except BaseException:
            self.stop()
            raise

    def _wait_serving(self) -> None:
        deadline = time.monotonic() + self._startup_timeout_s
        with grpc.insecure_channel(self.target) as channel:
            check = channel.unary_unary(
                "/grpc.health.v1.Health/Check",
                request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
                response_deserializer=health_pb2.HealthCheckResponse.FromString,
            )
            while True:
                assert self._proc is not None
                if self._proc.poll() is not None:
                    raise RuntimeError(
                        f"server exited with code {self._proc.returncode} during start-up:\n"
                        + self.log_tail()
                    )
                with contextlib.suppress(grpc.RpcError):
                    reply = check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=2)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"server not SERVING after {self._startup_timeout_s:.0f} s:\n"
                        + self.log_tail()
                    )
                time.sleep(0.2)

    def log_tail(self, lines: int = 40) -> str:
        if self._log is None or not self._log.exists():
            return ""
        return "\n".join(self._log.read_text(errors="replace").splitlines()[-lines:])

    def data_bytes(self) -> int:
        """Bytes the server's data directory holds now (the embedded store's files)."""
        if self._tmp is None:
            return 0
        data = self._data_dir or self._tmp / "data"
        return sum(f.stat().st_size for f in data.rglob("*") if f.is_file()) if data.exists() else 0

    def memory_kb(self) -> dict[str, int]:
        """VmHWM (peak resident set) and VmRSS of the server process, in kB (Linux only)."""
        out: dict[str, int] = {}
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                key, _, value = line.partition(":")
                if key in ("VmHWM", "VmRSS"):
                    out[key] = int(value.split()[0])
        return out

    def kill(self) -> None:
        """SIGKILL the server (no shutdown of any kind), then clean up like `stop`."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self.stop()

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit, so `with ServerProcess()` still stops the server when the
    benchmark itself is terminated (SIGINT is already KeyboardInterrupt, unless ignored)."""

    def handler(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        # Started in the background by a shell: make Ctrl-C / kill -INT work as well.
        signal.signal(signal.SIGINT, handler)


def percentile(samples: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), q in [0, 1]."""
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    pos = q * (len(ordered) - 1)
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def add_embedder_options(parser: ArgumentParser, *, parallel_calls: bool) -> None:
    """The local embedder's settings as bench flags (`--activations`, `--spin-us`,
    `--unfused`, and with `parallel_calls` `--parallel-calls`), for benches that pass them to
    the server."""
    parser.add_argument(
        "--activations",
        choices=("float", "int8"),
        default="float",
        help="the server's local MiniLM graph (PERSONA_EMBEDDINGS_LOCAL_ACTIVATIONS)",
    )
    parser.add_argument(
        "--spin-us",
        type=int,
        default=0,
        help="the server's PERSONA_EMBEDDINGS_LOCAL_SPIN_US (onnxruntime worker spin)",
    )
    parser.add_argument(
        "--unfused",
        action="store_true",
        help="run the packaged float graph as shipped (PERSONA_EMBEDDINGS_LOCAL_FUSED=false)",
    )
    if parallel_calls:
        parser.add_argument(
            "--parallel-calls",
            type=int,
            default=1,
            help="the server's PERSONA_EMBEDDINGS_LOCAL_PARALLEL_CALLS",
        )
