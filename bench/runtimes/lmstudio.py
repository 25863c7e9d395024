"""LM Studio. What its REST API v0 answers (lmstudio.ai/docs/app/api/endpoints/rest, LM Studio
0.3.6 and newer):

* ``GET /api/v0/models`` -> ``data[]``: ``id``, ``type`` ("llm", "vlm", "embeddings"),
  ``publisher``, ``arch``, ``compatibility_type`` ("gguf", "mlx"), ``quantization``, ``state``
  ("loaded" / "not-loaded") and ``max_context_length``: how bench recognises it;
* ``POST /api/v0/chat/completions`` answers an OpenAI chat completion plus ``stats``
  (``tokens_per_second``, ``time_to_first_token``, ``generation_time``, ``stop_reason``),
  ``model_info`` (``arch``, ``quant``, ``format``, ``context_length``) and ``runtime`` (the
  inference engine's ``name`` and ``version``). LM Studio loads a model on its first request
  (just in time), so bench loads it with a one-token request there and times that.

It reports no version of the app itself, no disk size and no license on these routes: they are
recorded as unknown, with the reason. Its own timings are only on the native route: with
``--server-timings`` bench asks there in a paired, untimed request.
"""

from __future__ import annotations

import time
from typing import Any

from bench.errors import BenchError
from bench.results.schema import ServerTimings
from bench.runtimes.base import merge_facts
from bench.runtimes.generic import OpenAICompatible
from bench.runtimes.http import Connection, HTTPFailure
from bench.util.bounded import excerpt

MAX_FACT_CHARS = 200
LOAD_TIMEOUT_S = 1800.0
MODELS, CHAT = "LM Studio /api/v0/models", "LM Studio /api/v0/chat/completions"
NOT_REPORTED = "LM Studio's REST API does not report it"


def _number(value: Any) -> float | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < 1e12
    return float(value) if ok else None


def _text(value: Any) -> str | None:
    return value[:MAX_FACT_CHARS] if isinstance(value, str) and value else None


class LMStudio(OpenAICompatible):
    name = "lmstudio"
    label = "LM Studio"

    def __init__(self, conn: Connection | None):
        super().__init__(conn)
        self._engine: str | None = None  # the inference engine a chat answer named

    @classmethod
    def detect(cls, conn: Connection) -> bool:
        data = conn.get("/api/v0/models", root=True, timeout_s=5).data
        items = data.get("data") if isinstance(data, dict) else None
        return isinstance(items, list) and all(isinstance(m, dict) and "state" in m for m in items[:50])

    def _models(self) -> list[dict[str, Any]]:
        try:
            data = self.conn.get("/api/v0/models", root=True, timeout_s=10).data if self.conn else None
        except HTTPFailure:
            return []
        items = data.get("data") if isinstance(data, dict) else None
        return [m for m in (items if isinstance(items, list) else [])[:10_000] if isinstance(m, dict)]

    def version(self) -> str | None:
        return self._engine  # the engine's, once a chat answer named it; the app's is not reported

    def loaded(self) -> list[str]:
        return [m["id"][:MAX_FACT_CHARS] for m in self._models() if m.get("state") == "loaded"
                and isinstance(m.get("id"), str)]

    def _chat(self, model_id: str, text: str, max_tokens: int, timeout_s: float, **options: Any) -> Any:
        body = {"model": model_id, "messages": [{"role": "user", "content": text}], "max_tokens": max_tokens,
                "stream": False, **options}
        data = self.conn.post("/api/v0/chat/completions", body, root=True, timeout_s=timeout_s).data
        runtime = data.get("runtime") if isinstance(data, dict) else None
        if isinstance(runtime, dict) and _text(runtime.get("name")):
            self._engine = f"{_text(runtime.get('name'))} {_text(runtime.get('version')) or ''}".strip()
        return data

    def ensure_loaded(self, model_id: str) -> float | None:
        """LM Studio loads on the first request: a one-token request, timed."""
        if self.conn is None or model_id in self.loaded():
            return None
        t0 = time.perf_counter()
        try:
            self._chat(model_id, "Hi", 1, LOAD_TIMEOUT_S)
        except HTTPFailure as e:
            raise BenchError(f"LM Studio did not load {model_id}: {excerpt(str(e))}") from None
        return time.perf_counter() - t0

    def model_facts(self, model_id: str) -> dict[str, Any]:
        entry = next((m for m in self._models() if m.get("id") == model_id), {})
        facts: dict[str, Any] = {
            "quantization": _text(entry.get("quantization")), "family": _text(entry.get("arch")),
            "format": _text(entry.get("compatibility_type")), "publisher": _text(entry.get("publisher")),
            "context_length": int(n) if (n := _number(entry.get("max_context_length"))) else None}
        facts["sources"] = {k: MODELS for k, v in facts.items() if v is not None}
        unknown = {"disk_bytes": NOT_REPORTED, "license": f"{NOT_REPORTED}: set license: for the model in bench.yaml"}
        if not self._engine:
            unknown["runtime_version"] = NOT_REPORTED + " (the engine's is named in a chat answer; none was seen)"
        else:
            facts["engine"], facts["sources"]["engine"] = self._engine, f"runtime in {CHAT}"
        return merge_facts({"unknown": unknown}, facts)

    def paired_timings(self, model_id: str, text: str, max_tokens: int, temperature: float,
                       seed: int | None) -> ServerTimings | None:
        if self.conn is None:
            return None
        try:
            data = self._chat(model_id, text, max_tokens, 600.0, temperature=temperature,
                              **({"seed": seed} if seed is not None else {}))
        except HTTPFailure:
            return None
        return chat_stats(data)


def chat_stats(data: Any) -> ServerTimings | None:
    """``stats`` of a /api/v0/chat/completions answer. Its decode time is taken from its own
    tokens_per_second (completion tokens / rate), so the rate compared is the one it reports."""
    stats = data.get("stats") if isinstance(data, dict) else None
    if not isinstance(stats, dict):
        return None
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    tokens = usage.get("completion_tokens")
    tokens = tokens if isinstance(tokens, int) and not isinstance(tokens, bool) and 0 < tokens < 2**31 else None
    prompt = usage.get("prompt_tokens")
    rate = _number(stats.get("tokens_per_second"))
    ttft = _number(stats.get("time_to_first_token"))
    if ttft is None and not (tokens and rate):
        return None
    return ServerTimings(source=f"{CHAT} stats (paired request, untimed)", paired=True, ttft_s=ttft,
                         prompt_tokens=prompt if isinstance(prompt, int) and not isinstance(prompt, bool)
                         and 0 <= prompt < 2**31 else None,
                         decode_tokens=tokens, decode_s=tokens / rate if tokens and rate else None)
