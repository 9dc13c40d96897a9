"""Composition root: settings -> adapters -> services -> gRPC server."""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass

from persona_server.config import Settings
from persona_server.extraction.offline.extractor import OfflineExtractor
from persona_server.observability import configure_logging, configure_tracing
from persona_server.ports.embedder import Embedder
from persona_server.ports.graph_store import GraphStore
from persona_server.services.ask import OfflineAskService
from persona_server.services.context_feed import ContextFeed
from persona_server.services.extraction import ExtractionPipeline, InlineExtraction
from persona_server.services.ingest import IngestService
from persona_server.services.memories import MemoryService
from persona_server.services.notifier import ChangeNotifier
from persona_server.services.recall import RecallService
from persona_server.transport.auth import KeyRing
from persona_server.transport.server import RunningServer, start_grpc_server
from persona_server.transport.servicer import Services

log = logging.getLogger(__name__)


def build_embedder_from(settings: Settings) -> Embedder:
    from persona_server.adapters.embedders.factory import build_embedder

    return build_embedder(
        base_url=settings.embeddings_base_url or None,
        model=settings.embeddings_model or None,
        api_key=settings.embeddings_api_key.get_secret_value() or None,
    )


def build_store(settings: Settings) -> GraphStore:
    if settings.store == "neo4j":
        raise NotImplementedError("the Neo4j store is not available in this build")
    from persona_server.adapters.stores.sqlite.store import SqliteGraphStore

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return SqliteGraphStore(settings.data_dir / "persona.db")


@dataclass
class App:
    settings: Settings
    store: GraphStore
    embedder: Embedder
    services: Services
    server: RunningServer
    owns_embedder: bool

    @property
    def port(self) -> int:
        return self.server.port

    async def stop(self, grace_s: float | None = None) -> None:
        await self.server.stop(self.settings.shutdown_grace_s if grace_s is None else grace_s)
        await self.store.close()
        if self.owns_embedder:
            await self.embedder.close()


async def start(settings: Settings, *, embedder: Embedder | None = None) -> App:
    """Start a server. Tests pass a shared `embedder` so the model loads once per session."""
    keys = KeyRing.from_settings(settings.api_keys.get_secret_value(), settings.api_keys_file)
    owns_embedder = embedder is None
    emb = embedder or build_embedder_from(settings)
    await emb.start()
    store = build_store(settings)
    await store.open(embedding_model=emb.model_id, dimension=emb.dimension)
    notifier = ChangeNotifier()
    recall = RecallService(store, emb)
    pipeline = ExtractionPipeline(store, emb, OfflineExtractor())
    services = Services(
        ingest=IngestService(store, emb, notifier, InlineExtraction(store, pipeline)),
        recall=recall,
        memories=MemoryService(store, notifier),
        feed=ContextFeed(store, emb, recall, notifier),
        ask=OfflineAskService(),
    )
    try:
        server = await start_grpc_server(settings, services, keys, store.ping)
    except BaseException:
        await store.close()
        raise
    return App(settings, store, emb, services, server, owns_embedder)


async def _serve_until_signal(settings: Settings) -> None:
    app = await start(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("persona ready", extra={"listen": settings.listen, "store": settings.store})
    await stop.wait()
    log.info("shutting down", extra={"grace_s": settings.shutdown_grace_s})
    await app.stop()


def serve(settings: Settings) -> None:
    """Run the server until SIGTERM or SIGINT (graceful: in-flight RPCs get a grace period)."""
    configure_logging(settings.log_level)
    configure_tracing(settings)
    asyncio.run(_serve_until_signal(settings))
