"""Runtimes: what bench knows about each kind of server, behind one protocol (``base.Runtime``).

``RUNTIMES`` is the detection order: the first whose ``detect`` says yes serves the endpoint;
the generic OpenAI-compatible runtime, last, takes any. The embedded llama.cpp runtime is not
detected: bench starts it for models configured with a GGUF ``path``.
"""

from __future__ import annotations

from bench.errors import ConfigError
from bench.runtimes.base import (
    EMBEDDED_NAME,
    MemoryReading,
    ModelList,
    OwnServer,
    Runtime,
)
from bench.runtimes.foundry import FoundryLocal
from bench.runtimes.generic import OpenAICompatible
from bench.runtimes.http import Connection, HTTPFailure
from bench.runtimes.llamacpp import LlamaServer
from bench.runtimes.lmstudio import LMStudio
from bench.runtimes.ollama import Ollama
from bench.runtimes.vllm import VLLM

RUNTIMES: list[type[Runtime]] = [FoundryLocal, Ollama, LMStudio, LlamaServer, VLLM, OpenAICompatible]


def register(runtime: type[Runtime]) -> type[Runtime]:
    """Add a runtime ahead of the generic one (usable as a class decorator)."""
    if not runtime.name:
        raise ValueError(f"{runtime.__name__} has no name")
    unregister(runtime.name)
    RUNTIMES.insert(len(RUNTIMES) - 1, runtime)
    return runtime


def unregister(name: str) -> None:
    RUNTIMES[:] = [r for r in RUNTIMES if r.name != name or r is OpenAICompatible]


def names() -> list[str]:
    """What an endpoint's ``runtime:`` in bench.yaml may name (the embedded runtime has no endpoint:
    bench starts it for models with a GGUF ``path``)."""
    return [r.name for r in RUNTIMES]


def self_serving() -> list[str]:
    """Runtimes whose endpoints may omit base_url: they find or start their own server."""
    return [r.name for r in RUNTIMES if r.finds_own_server]


def finds_own_server(name: str | None) -> bool:
    return name in self_serving()


def own_server(name: str, options: dict[str, str] | None = None) -> OwnServer:
    return next(r for r in RUNTIMES if r.name == name).own_server(dict(options or {}))


def detect(conn: Connection, forced: str | None = None) -> Runtime:
    """The runtime serving ``conn``: the one bench.yaml forces, else the first that recognises it.
    A runtime whose detection fails on a hostile answer is passed over, never fatal."""
    if forced:
        chosen = next((cls for cls in RUNTIMES if cls.name == forced), None)
        if chosen is None:
            raise ConfigError(f"unknown runtime '{forced}'; known: {', '.join(r.name for r in RUNTIMES)}")
        runtime = chosen(conn)
        if chosen is not OpenAICompatible and not _answers_like(chosen, conn):
            seen = next((cls for cls in RUNTIMES if cls is not chosen and _answers_like(cls, conn)), OpenAICompatible)
            runtime.note = (f"bench.yaml says runtime {forced}, but the endpoint does not answer like {chosen.label} "
                            f"(it answers like {seen.label}); bench uses {forced} as told: fix or remove runtime: "
                            "in bench.yaml if that is wrong")
        return runtime
    for cls in RUNTIMES:
        if _answers_like(cls, conn):
            return cls(conn)
    return OpenAICompatible(conn)


def _answers_like(cls: type[Runtime], conn: Connection) -> bool:
    try:
        return bool(cls.detect(conn))
    except (HTTPFailure, ValueError, KeyError, TypeError, AttributeError):
        return False


__all__ = ["EMBEDDED_NAME", "Connection", "HTTPFailure", "MemoryReading", "ModelList", "RUNTIMES", "Runtime", "detect", "names",
           "register", "unregister", "OwnServer", "own_server", "finds_own_server", "self_serving"]
