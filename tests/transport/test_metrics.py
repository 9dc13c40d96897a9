"""Metrics through the Prometheus endpoint of a real `persona serve` process
(PERSONA_METRICS_PROMETHEUS): request rate, errors and duration per RPC, open streams, the
extraction backlog.

A subprocess, because a meter provider is installed once per process."""

from __future__ import annotations

import re
import time
import urllib.request
from collections.abc import Iterator

import pytest

from bench._server import ServerProcess, free_port
from persona import InvalidArgumentError, PersonaClient


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[ServerProcess, str]]:
    port = free_port()
    with ServerProcess(extra_env={"PERSONA_METRICS_PROMETHEUS": f"127.0.0.1:{port}"}) as proc:
        yield proc, f"http://127.0.0.1:{port}/metrics"


def scrape(url: str) -> dict[str, float]:
    """Sample name with its labels (sorted, as exposed) -> value."""
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def value(samples: dict[str, float], metric: str, **labels: str) -> float:
    """The sum over samples of `metric` whose labels include `labels`."""
    total = 0.0
    for name, number in samples.items():
        base, _, rest = name.partition("{")
        if base != metric:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', rest))
        if all(have.get(k) == v for k, v in labels.items()):
            total += number
    return total


def eventually(url: str, check: object, timeout_s: float = 15.0) -> dict[str, float]:
    deadline = time.monotonic() + timeout_s
    while True:
        samples = scrape(url)
        if check(samples):  # type: ignore[operator]
            return samples
        if time.monotonic() > deadline:
            raise AssertionError("metrics never showed what was expected")
        time.sleep(0.2)


def test_requests_errors_and_durations_per_rpc(server: tuple[ServerProcess, str]) -> None:
    proc, url = server
    with PersonaClient(proc.target) as client:
        client.ingest("m1", text="I moved to Lisbon in March")
        for _ in range(3):
            client.recall("m1", "where do I live")
        with pytest.raises(InvalidArgumentError):
            client.recall("m1", "where", max_results=1000)
    samples = eventually(
        url,
        lambda s: value(s, "persona_rpc_requests_total", rpc="Recall", code="OK") >= 3,
    )
    assert value(samples, "persona_rpc_requests_total", rpc="Ingest", code="OK") == 1
    assert value(samples, "persona_rpc_requests_total", rpc="Recall", code="INVALID_ARGUMENT") == 1
    assert value(samples, "persona_rpc_duration_seconds_count", rpc="Recall") == 4
    assert value(samples, "persona_rpc_duration_seconds_sum", rpc="Recall") > 0
    # Health checks are not counted (ServerProcess polled health to start).
    assert not any("Health" in name for name in samples if name.startswith("persona_rpc"))


def test_open_streams_are_counted_and_closing_one_is_seen(
    server: tuple[ServerProcess, str],
) -> None:
    proc, url = server
    with PersonaClient(proc.target) as client:
        stream = client.stream_context("m2", heartbeat_seconds=1)
        events = iter(stream)
        next(events)  # the snapshot: the stream is open on the server
        eventually(url, lambda s: value(s, "persona_rpc_active", rpc="StreamContext") == 1)
        stream.close()
    samples = eventually(url, lambda s: value(s, "persona_rpc_active", rpc="StreamContext") == 0)
    assert value(samples, "persona_rpc_requests_total", rpc="StreamContext", code="CANCELLED") == 1


def test_extraction_backlog_and_llm_counters_are_exposed(
    server: tuple[ServerProcess, str],
) -> None:
    _, url = server
    # Offline, Ingest extracts inline: nothing is left to extract.
    samples = eventually(url, lambda s: "persona_extraction_backlog" in "".join(s))
    assert value(samples, "persona_extraction_backlog") == 0
