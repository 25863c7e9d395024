"""Quality: manual annotations and the LLM judge."""
