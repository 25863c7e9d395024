"""Ollama. What it answers, from docs/api.md in ollama/ollama:

* ``GET /api/version`` -> ``{"version": "0.12.3"}``: only Ollama has this route, so it is how
  bench recognises it (vLLM's is ``/version``);
* ``GET /api/tags`` -> ``models[]``: ``name`` (``llama3.2:latest``), ``size`` (bytes on disk),
  ``digest``, ``details`` (``format``, ``family``, ``parameter_size`` "3.2B",
  ``quantization_level`` "Q4_K_M");
* ``POST /api/show {"model"}`` -> ``license`` (the full text), ``model_info``
  (``general.parameter_count``, ``<arch>.context_length``), ``details``;
* ``GET /api/ps`` -> the loaded models: ``name``, ``size`` (memory it takes), ``size_vram``;
* ``POST /api/generate {"model", "prompt": ""}`` loads a model (``load_duration`` in ns);
  ``POST /api/pull {"model"}`` downloads one, streaming ``{"status", "total", "completed"}`` lines;
* non-streamed ``POST /api/chat`` reports its own timings: ``prompt_eval_count``,
  ``prompt_eval_duration``, ``eval_count``, ``eval_duration``, ``load_duration`` (ns). Its
  OpenAI-compatible route does not: bench measures there and, with --server-timings, asks the
  native route in a paired, untimed request.

A name without a tag is ``name:latest``.
"""

from __future__ import annotations

import difflib
import json
import time
from typing import Any, Callable

from bench.errors import BenchError
from bench.results.schema import ServerTimings
from bench.runtimes.base import NotDownloaded, merge_facts
from bench.runtimes.generic import OpenAICompatible
from bench.runtimes.http import Connection, HTTPFailure
from bench.runtimes.license import license_facts
from bench.util.bounded import excerpt

MAX_FACT_CHARS = 200
LOAD_TIMEOUT_S = 1800.0
PULL_TIMEOUT_S = 24 * 3600.0
MAX_PULL_LINES = 1_000_000
TAGS, SHOW, PS = "Ollama /api/tags", "Ollama /api/show", "Ollama /api/ps"


def _int(value: Any) -> int | None:
    ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**62
    return value if ok else None


def _text(value: Any) -> str | None:
    return value[:MAX_FACT_CHARS] if isinstance(value, str) and value else None


def parameter_size(text: Any) -> int | None:
    """"3.2B" / "135M" / "7b" -> a parameter count (Ollama's details.parameter_size)."""
    if not isinstance(text, str) or not 1 < len(text) <= 12:
        return None
    scale = {"K": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}.get(text[-1].upper())
    try:
        return int(float(text[:-1]) * scale) if scale else None
    except ValueError:
        return None


class NotPulled(NotDownloaded):
    """Not pulled: which may be a typo, so the pulled names closest to it are named too."""

    def __init__(self, model: str, listed: list[str]):
        super().__init__(model, None, "Ollama", True, f"ollama pull {model}")
        close = difflib.get_close_matches(model, listed[:2000], n=3, cutoff=0.6)
        if close:
            self.args = (f"{self.args[0]}; pulled models closest to the name: {', '.join(close)}",)


class Ollama(OpenAICompatible):
    name = "ollama"
    label = "Ollama"

    def __init__(self, conn: Connection | None):
        super().__init__(conn)
        self._version: str | None = None
        self._reported_load: float | None = None  # Ollama's own load_duration of the load bench timed
        self._listed: list[str] = []  # the pulled models, as last listed

    @classmethod
    def detect(cls, conn: Connection) -> bool:
        data = conn.get("/api/version", root=True, timeout_s=5).data
        return isinstance(data, dict) and isinstance(data.get("version"), str) and len(data) <= 4

    def version(self) -> str | None:
        if self._version is None and self.conn is not None:
            try:
                data = self.conn.get("/api/version", root=True, timeout_s=5).data
            except HTTPFailure:
                data = None
            self._version = _text(data.get("version")) if isinstance(data, dict) else None
        return self._version

    # -- models
    def served_id(self, name: str, listed: list[str]) -> str | None:
        """A listed name as listed; any other name as Ollama would pull it (``name:latest``
        when untagged): Ollama lists only pulled models, so an unlisted name may be one not
        pulled yet. Loading it says so (with the listed names closest to it)."""
        self._listed = listed
        if name in listed:
            return name
        return f"{name}:latest" if ":" not in name else name

    def _get(self, path: str) -> Any:
        try:
            return self.conn.get(path, root=True, timeout_s=10).data if self.conn else None
        except HTTPFailure:
            return None

    def _running(self) -> list[dict[str, Any]]:
        data = self._get("/api/ps")
        models = data.get("models") if isinstance(data, dict) else None
        return [m for m in (models if isinstance(models, list) else [])[:1000] if isinstance(m, dict)]

    def loaded(self) -> list[str]:
        return [m["name"][:MAX_FACT_CHARS] for m in self._running() if isinstance(m.get("name"), str)]

    def ensure_loaded(self, model_id: str) -> float | None:
        """Load with an empty generate request (Ollama's documented way), timed; a model that is
        not pulled answers 404 'not found'."""
        if self.conn is None or model_id in self.loaded():
            return None
        t0 = time.perf_counter()
        try:
            answer = self.conn.post("/api/generate", {"model": model_id, "prompt": "", "stream": False}, root=True,
                                    timeout_s=LOAD_TIMEOUT_S, ok_only=False)
        except HTTPFailure as e:
            raise BenchError(f"Ollama did not load {model_id} ({e})") from None
        elapsed = time.perf_counter() - t0
        message = answer.data.get("error") if isinstance(answer.data, dict) else None
        if answer.status == 404 or (isinstance(message, str) and "not found" in message and "pull" in message):
            raise NotPulled(model_id, self._listed)
        if answer.status != 200:
            raise BenchError(f"Ollama answered HTTP {answer.status}: {excerpt(message or answer.data)}")
        reported = _int(answer.data.get("load_duration")) if isinstance(answer.data, dict) else None
        if reported is not None:
            self._reported_load = reported / 1e9
        return elapsed

    def download(self, model_id: str, progress: Callable[[float], None]) -> None:
        """``ollama pull``: POST /api/pull, reading its progress lines (bounded)."""
        if self.conn is None:
            raise BenchError("no Ollama endpoint to pull from")
        try:
            lines = self.conn.stream_lines("/api/pull", {"model": model_id, "stream": True}, root=True,
                                           timeout_s=PULL_TIMEOUT_S)
            for n, line in enumerate(lines):
                if n > MAX_PULL_LINES:
                    raise BenchError(f"Ollama's pull of {model_id} sent more than {MAX_PULL_LINES} progress lines")
                _pull_line(line, model_id, progress)
        except HTTPFailure as e:
            raise BenchError(f"Ollama could not pull {model_id}: {e}") from None

    # -- facts
    def model_facts(self, model_id: str) -> dict[str, Any]:
        facts = [{"unknown": {"license": f"{SHOW} gave no license: set license: for the model in bench.yaml",
                              "runtime_memory_bytes": f"{model_id} is not loaded ({PS})"}}]
        facts.append(_tag_facts(self._get("/api/tags"), model_id))
        try:
            shown = self.conn.post("/api/show", {"model": model_id}, root=True, timeout_s=10).data if self.conn else None
        except HTTPFailure:
            shown = None
        facts.append(_show_facts(shown))
        for m in self._running():
            if m.get("name") == model_id:
                facts.append({"runtime_memory_bytes": _int(m.get("size")), "vram_bytes": _int(m.get("size_vram")),
                              "sources": {"runtime_memory_bytes": PS, "vram_bytes": PS}})
        if self._reported_load is not None:
            facts.append({"runtime_load_s": self._reported_load,
                          "sources": {"runtime_load_s": "Ollama /api/generate load_duration"}})
        return merge_facts(*facts)

    # -- its own clock, on its native route
    def paired_timings(self, model_id: str, text: str, max_tokens: int, temperature: float,
                       seed: int | None) -> ServerTimings | None:
        if self.conn is None:
            return None
        options = {"num_predict": max_tokens, "temperature": temperature, **({"seed": seed} if seed is not None else {})}
        try:
            data = self.conn.post("/api/chat", {"model": model_id, "messages": [{"role": "user", "content": text}],
                                                "stream": False, "options": options}, root=True, timeout_s=600).data
        except HTTPFailure:
            return None
        return chat_timings(data)


def chat_timings(data: Any) -> ServerTimings | None:
    """The timings of a non-streamed /api/chat answer (durations in ns)."""
    if not isinstance(data, dict):
        return None
    ns = {k: _int(data.get(k)) for k in ("prompt_eval_duration", "eval_duration", "load_duration")}
    if ns["eval_duration"] is None and ns["prompt_eval_duration"] is None:
        return None
    return ServerTimings(
        source="Ollama /api/chat (paired request, untimed)", paired=True,
        prompt_tokens=_int(data.get("prompt_eval_count")), decode_tokens=_int(data.get("eval_count")),
        prompt_s=ns["prompt_eval_duration"] / 1e9 if ns["prompt_eval_duration"] is not None else None,
        decode_s=ns["eval_duration"] / 1e9 if ns["eval_duration"] is not None else None,
        load_s=ns["load_duration"] / 1e9 if ns["load_duration"] is not None else None)


def _pull_line(line: bytes, model_id: str, progress: Callable[[float], None]) -> None:
    try:
        event = json.loads(line)
    except ValueError:
        return  # not a progress line: ignored
    if not isinstance(event, dict):
        return
    if "error" in event:
        raise BenchError(f"Ollama could not pull {model_id}: {excerpt(event['error'])}")
    total, done = _int(event.get("total")), _int(event.get("completed"))
    if total and done is not None:
        progress(min(100.0, 100.0 * done / total))


def _tag_facts(data: Any, model_id: str) -> dict[str, Any]:
    models = data.get("models") if isinstance(data, dict) else None
    entry = next((m for m in (models if isinstance(models, list) else [])[:10_000]
                  if isinstance(m, dict) and m.get("name") == model_id), None)
    if entry is None:
        return {}
    details = entry.get("details") if isinstance(entry.get("details"), dict) else {}
    facts = {"disk_bytes": _int(entry.get("size")), "digest": _text(entry.get("digest")),
             "format": _text(details.get("format")), "family": _text(details.get("family")),
             "quantization": _text(details.get("quantization_level")),
             "parameters": parameter_size(details.get("parameter_size"))}
    facts["sources"] = {k: TAGS for k, v in facts.items() if v is not None}
    return facts


def _show_facts(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        return {}
    facts: dict[str, Any] = {"sources": {}}
    info = data.get("model_info") if isinstance(data.get("model_info"), dict) else {}
    count = _int(info.get("general.parameter_count"))
    if count:
        facts["parameters"], facts["sources"]["parameters"] = count, SHOW
    arch = info.get("general.architecture")
    context = _int(info.get(f"{arch}.context_length")) if isinstance(arch, str) else None
    if context:
        facts["context_length"], facts["sources"]["context_length"] = context, SHOW
    return merge_facts(facts, license_facts(data.get("license"), SHOW))
