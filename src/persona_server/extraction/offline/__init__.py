"""The deterministic offline extractor: English rules, no model, no network."""

from persona_server.extraction.offline.extractor import OfflineExtractor, summarise

__all__ = ["OfflineExtractor", "summarise"]
