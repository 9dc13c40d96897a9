"""Composition root: settings -> adapters -> services -> gRPC server."""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

from persona_server import event_loop
from persona_server.blas import configure_blas
from persona_server.config import Settings
from persona_server.domain.tenancy import TenantLimits
from persona_server.extraction.offline.extractor import OfflineExtractor
from persona_server.extraction.offline.query_time import query_time_spans
from persona_server.observability import configure_logging, configure_metrics, configure_tracing
from persona_server.ports.embedder import Embedder
from persona_server.ports.graph_store import GraphStore
from persona_server.ports.llm import LlmClient
from persona_server.services.ask import AskService, OfflineAskService
from persona_server.services.change_retention import ChangeLogPruner
from persona_server.services.context_feed import ContextFeed
from persona_server.services.extraction import ExtractionPipeline, InlineExtraction, RetryPolicy
from persona_server.services.extraction_worker import ExtractionWorker, WorkerExtraction
from persona_server.services.feed_hub import ContextSource, FeedHub
from persona_server.services.graph_export import GraphExportService
from persona_server.services.graph_import import GraphImportService
from persona_server.services.ingest import ExtractionScheduler, IngestService
from persona_server.services.knowledge import KnowledgeService
from persona_server.services.knowledge_updater import KnowledgeWorker
from persona_server.services.memories import MemoryService
from persona_server.services.notifier import ChangeNotifier
from persona_server.services.profile import ProfileService
from persona_server.services.quotas import Quotas
from persona_server.services.recall import RecallService, RecallTuning
from persona_server.services.related_words import RelatedWords
from persona_server.services.retention import RetentionJob
from persona_server.services.user_profile import UserProfileService
from persona_server.transport.keys import KeySource
from persona_server.transport.server import RunningServer, start_grpc_server
from persona_server.transport.servicer import Services

log = logging.getLogger(__name__)


def build_embedder_from(settings: Settings) -> Embedder:
    from persona_server.adapters.embedders.factory import build_embedder

    return build_embedder(
        base_url=settings.embeddings_base_url or None,
        model=settings.embeddings_model or None,
        api_key=settings.embeddings_api_key.get_secret_value() or None,
        local_activations=settings.embeddings_local_activations,
        local_spin_us=settings.embeddings_local_spin_us,
        local_parallel_calls=settings.embeddings_local_parallel_calls,
        local_fused=settings.embeddings_local_fused,
    )


def build_store(settings: Settings) -> GraphStore:
    if settings.store == "neo4j":
        from persona_server.adapters.stores.neo4j.store import Neo4jGraphStore

        if not settings.neo4j_uri:
            raise ValueError("PERSONA_STORE=neo4j needs PERSONA_NEO4J_URI (e.g. neo4j://host:7687)")
        return Neo4jGraphStore(
            settings.neo4j_uri,
            settings.neo4j_user,
            settings.neo4j_password.get_secret_value(),
            settings.neo4j_database,
            max_pool_size=settings.neo4j_max_pool_size,
            connection_timeout_s=settings.neo4j_connection_timeout_s,
            max_retry_time_s=settings.neo4j_max_retry_time_s,
            vector_cache_bytes=settings.neo4j_vector_cache_bytes,
            change_log_max_entries=settings.change_log_max_entries,
        )
    from persona_server.adapters.stores.sqlite.store import SqliteGraphStore

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return SqliteGraphStore(
        settings.data_dir / "persona.db", change_log_max_entries=settings.change_log_max_entries
    )


@dataclass
class App:
    settings: Settings
    store: GraphStore
    embedder: Embedder
    services: Services
    server: RunningServer
    owns_embedder: bool
    extraction: Extraction | None = None
    pruner: ChangeLogPruner | None = None
    retention: RetentionJob | None = None
    knowledge: KnowledgeWorker | None = None

    @property
    def port(self) -> int:
        return self.server.port

    async def stop(self, grace_s: float | None = None) -> None:
        # Open streams end first, with UNAVAILABLE, so that clients resume (on another replica)
        # from their last token rather than wait for the grace period.
        await self.services.feed.hub.close()
        if self.pruner is not None:
            await self.pruner.stop()
        if self.retention is not None:
            await self.retention.stop()
        if self.knowledge is not None:
            await self.knowledge.stop()  # an update cut short keeps its cursor: redone later
        if self.extraction is not None:
            # First, and without waiting on the LLM: in-flight extractions are cancelled and
            # stay pending in the store; Ingest calls waiting on them return their state.
            await self.extraction.worker.stop()
        await self.server.stop(self.settings.shutdown_grace_s if grace_s is None else grace_s)
        if self.extraction is not None and self.extraction.llm is not None:
            await self.extraction.llm.close()
        await self.store.close()
        if self.owns_embedder:
            await self.embedder.close()


# Offline, Ingest extracts inline; the worker leaves fresh episodes to it and only retries
# failures and recovers episodes a crash left pending.
_OFFLINE_PENDING_GRACE_S = 60.0


@dataclass
class Extraction:
    """How ingestion derives memories and how AskStructured answers: offline rules, or an LLM."""

    pipeline: ExtractionPipeline
    scheduler: ExtractionScheduler
    worker: ExtractionWorker
    ask: AskService
    llm: LlmClient | None


def build_extraction(
    settings: Settings,
    store: GraphStore,
    embedder: Embedder,
    notifier: ChangeNotifier,
    recall: RecallService,
) -> Extraction:
    retry = RetryPolicy(
        base_s=settings.extraction_retry_base_s,
        max_s=settings.extraction_retry_max_s,
        max_attempts=settings.extraction_max_attempts,
    )
    if not settings.llm_configured:
        pipeline = ExtractionPipeline(store, embedder, OfflineExtractor())
        worker = ExtractionWorker(
            store,
            pipeline,
            notifier,
            retry=retry,
            poll_s=settings.extraction_poll_s,
            concurrency=settings.extraction_concurrency,
            pending_grace_s=_OFFLINE_PENDING_GRACE_S,
            lease_s=settings.extraction_lease_s,
        )
        scheduler = InlineExtraction(store, pipeline, retry)
        return Extraction(pipeline, scheduler, worker, OfflineAskService(), None)

    # Imported only when configured: the offline server never loads the `openai` package.
    from persona_server.adapters.llm.factory import build_llm_client
    from persona_server.extraction.llm.extractor import LlmExtractor
    from persona_server.ports.llm import BudgetLimits, LlmScope, use_scope
    from persona_server.services.ask_llm import LlmAskService

    llm = build_llm_client(settings)
    assert llm is not None
    limits = BudgetLimits(
        max_calls=settings.llm_max_calls_per_request,
        max_tokens=settings.llm_max_tokens_per_request,
    )
    pipeline = ExtractionPipeline(
        store,
        embedder,
        LlmExtractor(llm, limits),
        per_item=True,
        context_memories=settings.llm_context_memories,
        item_scope=lambda user: use_scope(LlmScope(user.tenant, limits.new_budget())),
    )
    worker = ExtractionWorker(
        store,
        pipeline,
        notifier,
        retry=retry,
        poll_s=settings.extraction_poll_s,
        concurrency=settings.extraction_concurrency,
        lease_s=settings.extraction_lease_s,
    )
    ask = LlmAskService(recall, llm, limits, store=store, notifier=notifier)
    return Extraction(pipeline, WorkerExtraction(worker), worker, ask, llm)


async def start(settings: Settings, *, embedder: Embedder | None = None) -> App:
    """Start a server. Tests pass a shared `embedder` so the model loads once per session."""
    keys = KeySource(
        settings.api_keys.get_secret_value(),
        settings.api_keys_file,
        poll_s=settings.api_keys_file_poll_s,
    )
    defaults = settings.tenant_limits

    def limits_for(tenant: str) -> TenantLimits:
        return keys.ring.limits_for(tenant, defaults)

    owns_embedder = embedder is None
    emb = embedder or build_embedder_from(settings)
    await emb.start()
    store = build_store(settings)
    await store.open(embedding_model=emb.model_id, dimension=emb.dimension)
    notifier = ChangeNotifier()
    decay = settings.decay
    recall = RecallService(
        store,
        emb,
        # The unnamed query knows the speakers from the related-words vocabulary: without it,
        # round four's passages (the new ones pay for the unnamed query's context only).
        RecallTuning()
        if settings.recall_unnamed_query and settings.recall_related_words
        else RecallTuning.without_unnamed(),
        time_spans=query_time_spans,
        decay=decay,
        related=RelatedWords(
            store, emb, max_bytes=settings.recall_related_words_bytes, notifier=notifier
        )
        if settings.recall_related_words
        else None,
    )
    profile = ProfileService(store, decay=decay)
    extraction = build_extraction(settings, store, emb, notifier, recall)
    services = Services(
        ingest=IngestService(
            store, emb, notifier, extraction.scheduler, quotas=Quotas(store, limits_for)
        ),
        recall=recall,
        memories=MemoryService(store, notifier),
        feed=ContextFeed(
            FeedHub(
                store,
                ContextSource(recall, profile, emb),
                notifier,
                poll_s=settings.stream_poll_s,
                buffer_limit=settings.stream_buffer,
            )
        ),
        ask=extraction.ask,
        graph_export=GraphExportService(store),
        graph_import=GraphImportService(store, emb, notifier),
        knowledge=KnowledgeService(store, llm_configured=settings.llm_configured),
        profile=UserProfileService(store, profile),
        decay_time=profile.decay_time,
    )
    try:
        server = await start_grpc_server(settings, services, keys, store.ping, limits_for)
    except BaseException:
        if extraction.llm is not None:
            await extraction.llm.close()
        await store.close()
        raise
    extraction.worker.start()
    _observe_backlog(extraction.worker)
    pruner = ChangeLogPruner(store, settings.change_log_max_age_s)
    pruner.start()
    retention = RetentionJob(
        store,
        lambda tenant: limits_for(tenant).retention_days,
        notifier,
        interval_s=settings.retention_interval_s,
        batch=settings.retention_batch,
    )
    retention.start()
    knowledge = build_knowledge_worker(settings, store, extraction.llm)
    if knowledge is not None:
        knowledge.start()
    return App(
        settings,
        store,
        emb,
        services,
        server,
        owns_embedder,
        extraction,
        pruner,
        retention,
        knowledge,
    )


def build_knowledge_worker(
    settings: Settings, store: GraphStore, llm: LlmClient | None
) -> KnowledgeWorker | None:
    """The worker that keeps knowledge documents up to date; None offline (no LLM)."""
    if llm is None:
        return None
    from persona_server.ports.llm import BudgetLimits
    from persona_server.services.knowledge_updater import KnowledgeUpdater

    limits = BudgetLimits(
        max_calls=settings.llm_max_calls_per_request,
        max_tokens=settings.llm_max_tokens_per_request,
    )
    retry = RetryPolicy(
        base_s=settings.extraction_retry_base_s, max_s=settings.extraction_retry_max_s
    )
    return KnowledgeWorker(
        store,
        KnowledgeUpdater(store, llm, limits),
        poll_s=settings.knowledge_poll_s,
        concurrency=settings.extraction_concurrency,
        retry=retry,
    )


def _observe_backlog(worker: ExtractionWorker) -> None:
    def observe(_options: CallbackOptions) -> list[Observation]:
        return [] if worker.backlog is None else [Observation(worker.backlog)]

    metrics.get_meter("persona.extraction").create_observable_gauge(
        "persona.extraction.backlog",
        callbacks=[observe],
        unit="{episode}",
        description="episodes whose extraction is still to come (pending or to be retried)",
    )


async def _serve_until_signal(settings: Settings) -> None:
    app = await start(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info(
        "persona ready",
        extra={
            "listen": settings.listen,
            "store": settings.store,
            "embedding_model": app.embedder.model_id,
            # Which local graph runs (fused, packaged after a fallback, int8); absent remotely.
            "embedding_graph": getattr(app.embedder, "graph", ""),
        },
    )
    await stop.wait()
    log.info("shutting down", extra={"grace_s": settings.shutdown_grace_s})
    await app.stop()


def serve(settings: Settings) -> None:
    """Run the server until SIGTERM or SIGINT (graceful: in-flight RPCs get a grace period)."""
    configure_logging(settings.log_level)
    configure_tracing(settings)
    configure_metrics(settings)
    configure_blas(settings.blas_threads)
    event_loop.run(_serve_until_signal(settings), settings.uvloop)
