"""Words too common to search for, shared by both stores' full-text queries (and Recall's
related-words channel, hence defined in the domain)."""

from __future__ import annotations

from persona_server.domain.words import STOP_WORDS

__all__ = ["STOP_WORDS"]
