"""bench: benchmark local language models on OpenAI-compatible servers."""

__version__ = "0.1.0"
