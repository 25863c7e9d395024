"""vLLM's OpenAI-compatible server (``vllm serve``). What it answers (docs.vllm.ai, "OpenAI-
Compatible Server" and "Production Metrics"):

* ``GET /version`` -> ``{"version": "0.11.0"}``;
* ``GET /v1/models`` -> each model with ``owned_by: "vllm"``, ``root`` (the weights it loaded: a
  path or a Hugging Face repo), ``parent`` and ``max_model_len``: bench recognises vLLM by
  ``/version`` together with ``owned_by: "vllm"`` (Ollama has ``/api/version``, not ``/version``);
* ``GET /metrics`` (Prometheus text): requests running and waiting, KV-cache usage, prefix-cache
  queries and hits; bench reads them once per model, after loading, as ``server_metrics``.

vLLM serves the model it loaded at start: nothing to load or download. It reports no
per-request timings, no disk size and no license: recorded as unknown with the reason.
"""

from __future__ import annotations

import math
from typing import Any

from bench.runtimes.base import merge_facts
from bench.runtimes.generic import OpenAICompatible
from bench.runtimes.http import Connection, HTTPFailure

MAX_FACT_CHARS = 200
MAX_METRICS_BYTES = 2 << 20
MODELS, METRICS = "vLLM /v1/models", "vLLM /metrics"
# Prometheus series bench keeps (vLLM 0.6 - 0.11 names; the KV-cache gauge was renamed in V1)
KEPT = {"vllm:num_requests_running": "requests_running", "vllm:num_requests_waiting": "requests_waiting",
        "vllm:gpu_cache_usage_perc": "kv_cache_usage", "vllm:kv_cache_usage_perc": "kv_cache_usage",
        "vllm:prefix_cache_queries_total": "prefix_cache_queries", "vllm:prefix_cache_hits_total": "prefix_cache_hits",
        "vllm:gpu_prefix_cache_queries_total": "prefix_cache_queries",
        "vllm:gpu_prefix_cache_hits_total": "prefix_cache_hits"}


def parse_metrics(text: str) -> dict[str, float]:
    """The series of KEPT from Prometheus exposition text, summed over their labels; anything
    else (comments, other series, junk lines, non-finite values) is ignored."""
    out: dict[str, float] = {}
    for line in text.splitlines()[:100_000]:
        if not line or line.startswith("#") or len(line) > 4096:
            continue
        name, _, rest = line.partition("{") if "{" in line.split(" ", 1)[0] else line.partition(" ")
        key = KEPT.get(name.strip())
        if key is None:
            continue
        fields = (rest.rsplit("}", 1)[-1] if "}" in rest else rest).split()
        try:
            value = float(fields[0])
        except (IndexError, ValueError):
            continue
        if math.isfinite(value) and value >= 0:
            out[key] = out.get(key, 0.0) + value
    return out


class VLLM(OpenAICompatible):
    name = "vllm"
    label = "vLLM"

    def __init__(self, conn: Connection | None):
        super().__init__(conn)
        self._version: str | None = None

    @classmethod
    def detect(cls, conn: Connection) -> bool:
        data = conn.get("/version", root=True, timeout_s=5).data
        if not (isinstance(data, dict) and isinstance(data.get("version"), str)):
            return False
        models = conn.get("/models", timeout_s=5).data
        items = models.get("data") if isinstance(models, dict) else None
        return isinstance(items, list) and any(isinstance(m, dict) and m.get("owned_by") == "vllm" for m in items[:50])

    def version(self) -> str | None:
        if self._version is None and self.conn is not None:
            try:
                data = self.conn.get("/version", root=True, timeout_s=5).data
            except HTTPFailure:
                data = None
            v = data.get("version") if isinstance(data, dict) else None
            self._version = v[:MAX_FACT_CHARS] if isinstance(v, str) and v else None
        return self._version

    def model_facts(self, model_id: str) -> dict[str, Any]:
        unknown = {"disk_bytes": "vLLM does not report it", "license": "vLLM does not report it: set license: for "
                                                                        "the model in bench.yaml"}
        facts: dict[str, Any] = {"sources": {}}
        entry = self._entry(model_id)
        length = entry.get("max_model_len")
        if isinstance(length, int) and not isinstance(length, bool) and 0 < length < 2**31:
            facts["context_length"], facts["sources"]["context_length"] = length, f"{MODELS} max_model_len"
        for key in ("root", "parent"):
            if isinstance(entry.get(key), str) and entry[key]:
                facts[f"weights_{key}"] = entry[key][:MAX_FACT_CHARS]
                facts["sources"][f"weights_{key}"] = MODELS
        metrics = self._metrics()
        if metrics:
            facts["server_metrics"], facts["sources"]["server_metrics"] = metrics, METRICS
        return merge_facts({"unknown": unknown}, facts)

    def _entry(self, model_id: str) -> dict[str, Any]:
        try:
            data = self.conn.get("/models", timeout_s=10).data if self.conn else None
        except HTTPFailure:
            return {}
        items = data.get("data") if isinstance(data, dict) else None
        return next((m for m in (items if isinstance(items, list) else [])[:1000]
                     if isinstance(m, dict) and m.get("id") == model_id), {})

    def _metrics(self) -> dict[str, float]:
        try:
            text = self.conn.get_text("/metrics", root=True, timeout_s=10, max_bytes=MAX_METRICS_BYTES) \
                if self.conn else None
        except HTTPFailure:
            return {}
        return parse_metrics(text) if text else {}
