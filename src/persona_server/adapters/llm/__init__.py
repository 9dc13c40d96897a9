"""LLM clients: the OpenAI Chat Completions API and compatible servers."""
