"""Mutual TLS with certificates the test makes, and what the logs may hold at the default level."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import grpc
import pytest
import trustme

from persona import AsyncPersonaClient, Item, PersonaError, UnavailableError
from persona_server.adapters.embedders.local_onnx import LocalOnnxEmbedder
from persona_server.app import App, start
from persona_server.transport.server import StartupError
from tests.transport.transport_settings import KEY_A, make_settings


def _files(tmp_path: Path, name: str, cert: trustme.LeafCert) -> tuple[bytes, bytes]:
    chain = b"".join(blob.bytes() for blob in cert.cert_chain_pems)
    return chain, cert.private_key_pem.bytes()


async def test_mutual_tls_needs_a_client_certificate_from_the_trusted_ca(
    tmp_path: Path, embedder: LocalOnnxEmbedder
) -> None:
    server_ca, client_ca, rogue_ca = trustme.CA(), trustme.CA(), trustme.CA()
    server_cert = server_ca.issue_cert("localhost", "127.0.0.1")
    (tmp_path / "server.pem").write_bytes(_files(tmp_path, "server", server_cert)[0])
    (tmp_path / "server.key").write_bytes(server_cert.private_key_pem.bytes())
    client_ca.cert_pem.write_to_path(str(tmp_path / "clients-ca.pem"))
    settings = make_settings(
        tmp_path / "data",
        tls_cert_file=tmp_path / "server.pem",
        tls_key_file=tmp_path / "server.key",
        tls_client_ca_file=tmp_path / "clients-ca.pem",
    )
    app = await start(settings, embedder=embedder)
    target = f"localhost:{app.port}"
    root = server_ca.cert_pem.bytes()
    try:
        chain, key = _files(tmp_path, "client", client_ca.issue_cert("service-a"))
        trusted = grpc.ssl_channel_credentials(root, private_key=key, certificate_chain=chain)
        async with AsyncPersonaClient(target, api_key=KEY_A, tls=trusted) as client:
            await client.ingest("u1", [Item("over mutual TLS", source_id="m")])
            assert (await client.recall("u1", "mutual TLS", max_results=1)).results

        rogue_chain, rogue_key = _files(tmp_path, "rogue", rogue_ca.issue_cert("intruder"))
        for credentials in (
            grpc.ssl_channel_credentials(root),  # no client certificate at all
            grpc.ssl_channel_credentials(
                root, private_key=rogue_key, certificate_chain=rogue_chain
            ),
        ):
            async with AsyncPersonaClient(
                target, api_key=KEY_A, tls=credentials, retry=None
            ) as refused:
                with pytest.raises(UnavailableError):
                    await refused.recall("u1", "mutual TLS", max_results=1, timeout=5)
    finally:
        await app.stop(grace_s=0)


async def test_a_client_ca_without_tls_is_a_startup_error(
    tmp_path: Path, embedder: LocalOnnxEmbedder
) -> None:
    trustme.CA().cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    settings = make_settings(tmp_path / "data", tls_client_ca_file=tmp_path / "ca.pem")
    with pytest.raises(StartupError, match="needs TLS"):
        await start(settings, embedder=embedder)


SECRET_TEXT = "my bank pin is 4921 and my diagnosis is confidential"
SECRET_QUERY = "what is the diagnosis of zephyrine"


async def test_no_key_or_memory_text_reaches_the_logs_at_the_default_level(
    app: App, client: AsyncPersonaClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)  # the default PERSONA_LOG_LEVEL
    await client.ingest("u1", [Item(SECRET_TEXT, source_id="s1", metadata={"k": "pin 4921"})])
    await client.recall("u1", SECRET_QUERY, max_results=5, explain=True)
    with pytest.raises(PersonaError):
        await client.ask_structured("u1", SECRET_QUERY, json.dumps({"type": "object"}))
    with pytest.raises(PersonaError):
        await client.ingest("u1", [Item(SECRET_TEXT + "!", source_id="s1")])  # a conflict
    with pytest.raises(PersonaError):
        await client.recall("u1", SECRET_QUERY, max_results=500)  # invalid
    stream = client.stream_context("u1", query=SECRET_QUERY)
    await stream.__aiter__().__anext__()
    await stream.aclose()
    async with AsyncPersonaClient(f"127.0.0.1:{app.port}", api_key="leaked-key-123") as bad:
        with pytest.raises(PersonaError):
            await bad.recall("u1", SECRET_QUERY, max_results=1)
    await client.delete_user("u1")

    logged = "\n".join(
        f"{r.getMessage()} {json.dumps(vars(r), default=str)}" for r in caplog.records
    )
    assert caplog.records, "nothing was logged at all: the check would be empty"
    for secret in ("4921", "diagnosis", "zephyrine", "leaked-key-123", KEY_A):
        assert secret not in logged, f"{secret!r} reached the logs"
