"""The time a query names ("what did I do last May?"), for time-aware Recall."""

from __future__ import annotations

from datetime import datetime

from persona_server.extraction.offline.extractor import OfflineExtractor
from persona_server.ports.extractor import ExtractionInput

_EXTRACTOR = OfflineExtractor()


def query_time_spans(query: str, now: datetime) -> list[tuple[datetime, datetime]]:
    """[start, end) spans of the dates in `query`, relative dates resolved against `now`."""
    result = _EXTRACTOR.extract_sync(ExtractionInput(text=query, occurred_at=now))
    return [(d.start, d.end) for d in result.dates]
