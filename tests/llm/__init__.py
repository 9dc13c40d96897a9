"""LLM path: adapter, extraction, durability and AskStructured against a scripted server."""
