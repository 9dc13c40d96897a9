"""LLM extraction: one structured call per ingested item, with the user's memories as context."""
