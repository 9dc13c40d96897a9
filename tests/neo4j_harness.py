"""Run a real Neo4j 5 (Community, in-process via neo4j-harness) for the test suite.

The Java side lives in ``tests/neo4j_launcher`` (see its README). This module builds it with
Maven when needed and runs it as a child process::

    jar = build_launcher()
    with Neo4jProcess(tmp_path / "neo4j") as server:
        server.uri        # "bolt://127.0.0.1:PORT", auth disabled
        server.restart()  # same data directory and port: simulates an outage
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import queue
import random
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType

LAUNCHER_DIR = Path(__file__).resolve().parent / "neo4j_launcher"
LAUNCHER_JAR = LAUNCHER_DIR / "target" / "neo4j-launcher.jar"
LAUNCHER_LIB = LAUNCHER_DIR / "target" / "lib"

#: Modest JVM for a 2-core CI box that runs other tests too. Override with
#: ``PERSONA_NEO4J_JVM_OPTS`` (a shell-quoted string).
DEFAULT_JVM_OPTS: tuple[str, ...] = (
    "-Xms256m",
    "-Xmx1g",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",  # C1 only: faster start, fewer compiler threads
    "-XX:+ExitOnOutOfMemoryError",
)
DEFAULT_PAGE_CACHE_MB = 32
READY_TIMEOUT_S = 180.0
BUILD_TIMEOUT_S = 1200.0
READY_PREFIX = "NEO4J_READY "
STOPPED_LINE = "NEO4J_STOPPED"

# Ports are picked below the Linux ephemeral range (32768-60999), so that while the server is
# down for a restart test no outgoing connection of some other process takes its port.
_PORT_RANGE = (20000, 32000)


class Neo4jHarnessError(RuntimeError):
    """The launcher could not be built or Neo4j did not start/stop as expected."""


# --------------------------------------------------------------------------------------- build


def _source_files() -> list[Path]:
    files = [LAUNCHER_DIR / "pom.xml"]
    files.extend(p for p in (LAUNCHER_DIR / "src").rglob("*") if p.is_file())
    return files


def launcher_is_stale() -> bool:
    """True when the jar is missing or older than any of its sources."""
    if not LAUNCHER_JAR.is_file() or not LAUNCHER_LIB.is_dir():
        return True
    jar_mtime = LAUNCHER_JAR.stat().st_mtime
    return any(p.stat().st_mtime > jar_mtime for p in _source_files())


@contextlib.contextmanager
def _build_lock() -> Iterator[None]:
    # Several pytest processes (xdist workers, parallel runs) may want the jar at once.
    lock_path = Path(tempfile.gettempdir()) / f"persona-neo4j-launcher-{os.getuid()}.lock"
    with lock_path.open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def build_launcher(*, force: bool = False, timeout: float = BUILD_TIMEOUT_S) -> Path:
    """Build ``neo4j-launcher.jar`` with Maven when it is missing or stale; return its path.

    Runs ``mvn -q -B package`` (colours off) in ``tests/neo4j_launcher``. Extra Maven arguments
    can be given in ``PERSONA_NEO4J_MAVEN_ARGS`` (e.g. ``-Dmaven.repo.local=/cache/m2 -o``).
    """
    with _build_lock():
        if not force and not launcher_is_stale():
            return LAUNCHER_JAR
        mvn = shutil.which("mvn")
        if mvn is None:
            raise Neo4jHarnessError(
                "Maven ('mvn') is not on PATH: it is needed to build the Neo4j test launcher in "
                f"{LAUNCHER_DIR}. Install Maven and a JDK 17+, set PERSONA_NEO4J_URI to use an "
                "existing Neo4j 5, or deselect these tests with -m 'not neo4j'."
            )
        cmd = [mvn, "-q", "-B", "-Dstyle.color=never", "package"]
        cmd += shlex.split(os.environ.get("PERSONA_NEO4J_MAVEN_ARGS", ""))
        try:
            proc = subprocess.run(
                cmd,
                cwd=LAUNCHER_DIR,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            out = _tail(_as_text(exc.stdout) + _as_text(exc.stderr))
            raise Neo4jHarnessError(
                f"building the Neo4j launcher timed out after {timeout:.0f}s: {shlex.join(cmd)}\n"
                f"{out}"
            ) from exc
        if proc.returncode != 0 or not LAUNCHER_JAR.is_file():
            raise Neo4jHarnessError(
                f"building the Neo4j launcher failed (exit {proc.returncode}): "
                f"{shlex.join(cmd)} in {LAUNCHER_DIR}\n{_tail(proc.stdout + proc.stderr)}"
            )
        return LAUNCHER_JAR


def _as_text(data: str | bytes | None) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data


def _tail(text: str, lines: int = 80) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


# ------------------------------------------------------------------------------------- process


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def pick_port() -> int:
    """A currently free loopback port outside the ephemeral range."""
    rng = random.Random()
    for _ in range(200):
        port = rng.randint(*_PORT_RANGE)
        if _port_is_free(port):
            return port
    raise Neo4jHarnessError("no free port found for Neo4j Bolt")


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise Neo4jHarnessError("'java' (JDK 17+) is not on PATH and JAVA_HOME is not set")
    return java


class Neo4jProcess:
    """One Neo4j server (a JVM running the launcher jar) with a fixed data directory.

    ``base_dir`` holds ``data/`` (kept across stop/start), ``run/`` (the harness's scratch home)
    and ``launcher.log`` (the JVM's stderr, appended across restarts).
    """

    def __init__(
        self,
        base_dir: Path,
        *,
        port: int | None = None,
        jar: Path | None = None,
        jvm_opts: Sequence[str] | None = None,
        page_cache_mb: int = DEFAULT_PAGE_CACHE_MB,
        ready_timeout: float = READY_TIMEOUT_S,
    ) -> None:
        self.base_dir = Path(base_dir).resolve()
        self.data_dir = self.base_dir / "data"
        self.work_dir = self.base_dir / "run"
        self.log_path = self.base_dir / "launcher.log"
        self.jar = jar or LAUNCHER_JAR
        if jvm_opts is None:
            env_opts = os.environ.get("PERSONA_NEO4J_JVM_OPTS")
            jvm_opts = shlex.split(env_opts) if env_opts else DEFAULT_JVM_OPTS
        self.jvm_opts = tuple(jvm_opts)
        self.page_cache_mb = page_cache_mb
        self.ready_timeout = ready_timeout
        self._port = port
        self._proc: subprocess.Popen[str] | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader: threading.Thread | None = None
        #: seconds from spawn to the READY line, for the last start
        self.last_start_seconds: float | None = None

    # -- info

    @property
    def port(self) -> int:
        if self._port is None:
            raise Neo4jHarnessError("Neo4j has not been started yet")
        return self._port

    @property
    def uri(self) -> str:
        return f"bolt://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def rss_bytes(self) -> int | None:
        """Resident memory of the JVM (Linux /proc), or None."""
        if not self.is_running() or self.pid is None:
            return None
        try:
            status = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return None
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return None

    def log_tail(self, lines: int = 60) -> str:
        try:
            return _tail(self.log_path.read_text(errors="replace"), lines)
        except OSError:
            return ""

    # -- lifecycle

    def start(self) -> str:
        """Start Neo4j and wait for Bolt; returns the URI. Reuses the port of a previous start."""
        if self.is_running():
            return self.uri
        if not self.jar.is_file():
            raise Neo4jHarnessError(f"launcher jar not found: {self.jar} (call build_launcher())")
        self.base_dir.mkdir(parents=True, exist_ok=True)
        # A fixed port is kept (restart); a first start picks one and retries on a lost race.
        attempts = 1 if self._port is not None else 3
        for attempt in range(attempts):
            port = self._port if self._port is not None else pick_port()
            try:
                self._spawn_and_wait(port)
            except Neo4jHarnessError:
                if attempt + 1 < attempts and "Address already in use" in self.log_tail(200):
                    continue
                raise
            self._port = port
            return self.uri
        raise AssertionError("unreachable")

    def _spawn_and_wait(self, port: int) -> None:
        cmd = [
            _java(),
            *self.jvm_opts,
            "-jar",
            str(self.jar),
            "--data-dir",
            str(self.data_dir),
            "--work-dir",
            str(self.work_dir),
            "--port",
            str(port),
            "--page-cache-mb",
            str(self.page_cache_mb),
        ]
        with self.log_path.open("a") as log:
            log.write(f"\n=== {time.strftime('%H:%M:%S')} starting: {shlex.join(cmd)}\n")
            log.flush()
            t0 = time.monotonic()
            # stdin stays open: the launcher shuts down when it is closed (or when we die).
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                start_new_session=True,  # own process group: killed as a whole on teardown
            )
        self._proc = proc
        self._lines = queue.Queue()
        self._reader = threading.Thread(
            target=self._read_stdout, args=(proc, self._lines), name="neo4j-stdout", daemon=True
        )
        self._reader.start()

        deadline = t0 + self.ready_timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._kill()
                raise Neo4jHarnessError(
                    f"Neo4j did not report ready within {self.ready_timeout:.0f}s "
                    f"(log {self.log_path}):\n{self.log_tail()}"
                )
            try:
                line = self._lines.get(timeout=min(remaining, 1.0))
            except queue.Empty:
                continue
            if line is None:  # stdout closed: the JVM exited
                rc = proc.wait(timeout=30)
                self._reap(proc)
                raise Neo4jHarnessError(
                    f"Neo4j launcher exited with code {rc} before it was ready "
                    f"(log {self.log_path}):\n{self.log_tail()}"
                )
            if line.startswith(READY_PREFIX):
                self.last_start_seconds = time.monotonic() - t0
                return

    @staticmethod
    def _read_stdout(proc: subprocess.Popen[str], lines: queue.Queue[str | None]) -> None:
        assert proc.stdout is not None
        try:
            for raw in proc.stdout:
                lines.put(raw.strip())
        except (OSError, ValueError):
            pass
        finally:
            lines.put(None)

    def stop(self, timeout: float = 60.0) -> None:
        """Clean shutdown (checkpoint): close stdin, then SIGTERM, then SIGKILL the group."""
        proc = self._proc
        if proc is None:
            return
        try:
            if proc.poll() is None:
                with contextlib.suppress(OSError):
                    assert proc.stdin is not None
                    proc.stdin.close()
                try:
                    proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    self._signal_group(proc, signal.SIGTERM)
                    try:
                        proc.wait(timeout=15)
                    except subprocess.TimeoutExpired:
                        self._kill()
        finally:
            self._reap(proc)

    def kill(self) -> None:
        """Hard crash (SIGKILL, no checkpoint): the next start has to recover."""
        self._kill()

    def restart(self, *, downtime: float = 0.0) -> str:
        """Stop cleanly, optionally stay down ``downtime`` seconds, start on the same port/data."""
        self.stop()
        if downtime > 0:
            time.sleep(downtime)
        return self.start()

    def _kill(self) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            self._signal_group(proc, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=15)
        self._reap(proc)

    @staticmethod
    def _signal_group(proc: subprocess.Popen[str], sig: signal.Signals) -> None:
        try:
            os.killpg(proc.pid, sig)  # start_new_session: the group id is the JVM's pid
        except (ProcessLookupError, PermissionError):
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)

    def _reap(self, proc: subprocess.Popen[str]) -> None:
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        if self._reader is not None:
            self._reader.join(timeout=5)  # ends at EOF, i.e. once the JVM has exited
            self._reader = None
        if proc.stdout is not None:
            with contextlib.suppress(OSError):
                proc.stdout.close()
        self._proc = None

    def __enter__(self) -> Neo4jProcess:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
