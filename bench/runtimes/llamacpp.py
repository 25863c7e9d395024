"""llama.cpp's own server, ``llama-server`` (the C++ one; bench's embedded runtime runs
llama-cpp-python's). What it answers, from tools/server/README.md in ggml-org/llama.cpp:

* ``GET /props`` -> ``default_generation_settings`` (with ``n_ctx``), ``total_slots``,
  ``model_path``, ``chat_template`` and, in builds since early 2025, ``build_info``
  (``b5000-1a2b3c4d``): how bench recognises it, its version and context size;
* ``GET /v1/models`` -> each model's ``meta``: ``n_params``, ``size`` (bytes of its tensors),
  ``n_ctx_train``, ``n_vocab``;
* every completion carries a ``timings`` object (``prompt_n``, ``prompt_ms``, ``predicted_n``,
  ``predicted_ms``, and ``cache_n`` in newer builds): its own clock for prefill and decode,
  stored per request beside bench's figures (streams: on the last chunk);
* one model per server, loaded at start: nothing to load or download.

When the server runs on this machine, the GGUF at ``model_path`` gives the disk footprint and
the license, quantization and size label from its metadata.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.results.schema import ServerTimings
from bench.runtimes.base import merge_facts
from bench.runtimes.generic import OpenAICompatible
from bench.runtimes.gguf import read_metadata
from bench.runtimes.http import Connection, HTTPFailure
from bench.runtimes.license import license_facts

MAX_FACT_CHARS = 200
LOOPBACK = ("127.0.0.1", "localhost", "::1")
PROPS = "llama-server /props"
MODELS = "llama-server /v1/models meta"
GGUF = "the model's GGUF metadata"
# GGUF general.file_type -> llama.cpp's quantization name (llama.h, enum llama_ftype)
FILE_TYPES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
              11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S", 17: "Q5_K_M",
              18: "Q6_K", 32: "BF16"}


def _number(value: Any) -> float | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < 1e12
    return float(value) if ok else None


def _count(value: Any) -> int | None:
    n = _number(value)
    return int(n) if n is not None and n == int(n) else None


class LlamaServer(OpenAICompatible):
    name = "llama-server"
    label = "llama.cpp llama-server"

    def __init__(self, conn: Connection | None):
        super().__init__(conn)
        self._props: dict[str, Any] | None = None

    @classmethod
    def detect(cls, conn: Connection) -> bool:
        data = conn.get("/props", root=True, timeout_s=5).data
        return (isinstance(data, dict) and isinstance(data.get("default_generation_settings"), dict)
                and ("total_slots" in data or "build_info" in data))

    def props(self) -> dict[str, Any]:
        if self._props is None and self.conn is not None:
            try:
                data = self.conn.get("/props", root=True, timeout_s=5).data
            except HTTPFailure:
                data = None
            self._props = data if isinstance(data, dict) else {}
        return self._props or {}

    def version(self) -> str | None:
        build = self.props().get("build_info")
        return f"llama.cpp {build[:MAX_FACT_CHARS]}" if isinstance(build, str) and build else None

    # -- facts
    def model_facts(self, model_id: str) -> dict[str, Any]:
        props, unknown = self.props(), {}
        facts: dict[str, Any] = {"sources": {}}
        n_ctx = _count((props.get("default_generation_settings") or {}).get("n_ctx"))
        if n_ctx:
            facts["context_length"], facts["sources"]["context_length"] = n_ctx, f"{PROPS} (the server's n_ctx)"
        meta = self._meta(model_id)
        for key, fact in (("n_params", "parameters"), ("size", "model_bytes"), ("n_ctx_train", "trained_context")):
            value = _count(meta.get(key))
            if value:
                facts[fact], facts["sources"][fact] = value, MODELS
        if not self.version():
            unknown["runtime_version"] = "this llama-server build reports no build_info in /props"
        path = props.get("model_path")
        local = self.conn is not None and urlsplit(self.conn.base_url).hostname in LOOPBACK
        if isinstance(path, str) and path and local:
            facts = merge_facts(facts, _gguf_facts(Path(path[:4096])))
        else:
            why = "the server is not on this machine" if not local else "/props gives no model_path"
            unknown.update(disk_bytes=why, license=f"{why}; set license: for the model in bench.yaml")
        return merge_facts({"unknown": unknown}, facts)

    def _meta(self, model_id: str) -> dict[str, Any]:
        try:
            data = self.conn.get("/models", timeout_s=10).data if self.conn else None
        except HTTPFailure:
            return {}
        items = data.get("data") if isinstance(data, dict) else None
        for m in items[:100] if isinstance(items, list) else []:
            if isinstance(m, dict) and m.get("id") == model_id and isinstance(m.get("meta"), dict):
                return m["meta"]
        return {}

    # -- its own clock
    def response_timings(self, raw: Any) -> ServerTimings | None:
        if not isinstance(raw, dict):
            return None
        prompt_ms, predicted_ms = _number(raw.get("prompt_ms")), _number(raw.get("predicted_ms"))
        if prompt_ms is None and predicted_ms is None:
            return None
        return ServerTimings(
            source="llama-server timings in the response", prompt_tokens=_count(raw.get("prompt_n")),
            prompt_s=prompt_ms / 1000 if prompt_ms is not None else None, decode_tokens=_count(raw.get("predicted_n")),
            decode_s=predicted_ms / 1000 if predicted_ms is not None else None, cached_tokens=_count(raw.get("cache_n")))


def _gguf_facts(path: Path) -> dict[str, Any]:
    """Disk footprint and what the GGUF's metadata says (license, quantization, size label)."""
    unknown: dict[str, str] = {}
    facts: dict[str, Any] = {"sources": {}}
    try:
        facts["disk_bytes"], facts["sources"]["disk_bytes"] = os.stat(path).st_size, f"size of {path.name}"
    except OSError as e:
        unknown["disk_bytes"] = f"cannot read {path.name} ({e.strerror})"
        unknown["license"] = f"cannot read {path.name}: set license: for the model in bench.yaml"
        return {"unknown": unknown, **facts}
    meta: dict[str, Any] = {}
    with contextlib.suppress(Exception):  # noqa: BLE001 - a file bench cannot parse yields no facts
        meta = read_metadata(path)
    facts = merge_facts(facts, license_facts(meta.get("general.license"), GGUF))
    if "license" not in facts and "unknown" not in facts:
        unknown["license"] = "the GGUF's metadata has no general.license: set license: for the model in bench.yaml"
    file_type = meta.get("general.file_type")
    if isinstance(file_type, int) and file_type in FILE_TYPES:
        facts["quantization"], facts["sources"]["quantization"] = FILE_TYPES[file_type], GGUF
    label = meta.get("general.size_label")
    if isinstance(label, str) and label:
        facts["size_label"], facts["sources"]["size_label"] = label[:40], GGUF
    return merge_facts({"unknown": unknown}, facts)
