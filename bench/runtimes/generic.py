"""Any OpenAI-compatible server (vLLM, LM Studio, Ollama, llama.cpp, Foundry Local, OpenAI, ...):
only what the OpenAI API and a few widespread extensions tell."""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

import psutil

from bench.runtimes.base import MemoryReading, Runtime, watch_process
from bench.runtimes.http import Connection, HTTPFailure
from bench.runtimes.process import loopback_server
from bench.util.bounded import excerpt

MAX_TOKENIZE_BYTES = 1 << 20  # a tokenize answer larger than this is not a tokenizer


def _token_list_length(answer: Any) -> int:
    tokens = answer.get("tokens") if isinstance(answer, dict) else None
    if not isinstance(tokens, list):
        raise ValueError("no token list")
    return len(tokens)


def _token_count_field(answer: Any) -> Any:
    return answer["count"] if isinstance(answer, dict) and "count" in answer else _token_list_length(answer)


def plausible_token_count(n: Any, text: str) -> int:
    """A tokenizer's count for ``text``, if it can be one: an integer, at least 1 for a non-empty
    text, at most one token per UTF-8 byte plus a few special tokens; else ValueError."""
    if isinstance(n, bool) or not isinstance(n, int) or not (1 if text else 0) <= n <= len(text.encode()) + 16:
        raise ValueError(f"not a token count for {len(text)} characters: {excerpt(n, 40)}")
    return n


# Tokenize routes servers expose (path below the root, request body, how to read the count):
# llama-cpp-python, vLLM, llama.cpp's llama-server.
TOKENIZE_SHAPES: list[tuple[str, Callable[[str, str], dict], Callable[[Any], Any]]] = [
    ("/extras/tokenize", lambda m, t: {"input": t, "model": m}, _token_list_length),
    ("/tokenize", lambda m, t: {"model": m, "prompt": t}, _token_count_field),
    ("/tokenize", lambda m, t: {"content": t}, _token_list_length),
]


class OpenAICompatible(Runtime):
    name = "openai-compatible"
    label = "OpenAI-compatible server"

    def __init__(self, conn: Connection | None):
        super().__init__(conn)
        self._tokenize: Callable[[str, str], int] | None | bool = False  # False: not yet probed
        self._baseline: dict[str, int] = {}
        self._process = loopback_server(conn.base_url) if conn is not None else None

    @classmethod
    def detect(cls, conn: Connection) -> bool:
        return True

    # -- tokens
    def _find_tokenizer(self, model: str) -> Callable[[str, str], int] | None:
        for path, body, count in TOKENIZE_SHAPES:

            def tokenize(mm: str, t: str, path=path, body=body, count=count) -> int:
                answer = self.conn.post(path, body(mm, t), root=True, timeout_s=30, max_bytes=MAX_TOKENIZE_BYTES)
                return plausible_token_count(count(answer.data), t)

            try:
                tokenize(model, "hello world")
            except (HTTPFailure, ValueError, KeyError, TypeError):  # any failure means: not this shape
                continue
            return tokenize
        return None

    def count_tokens(self, model_id: str, text: str) -> int | None:
        if self.conn is None:
            return None
        if self._tokenize is False:
            self._tokenize = self._find_tokenizer(model_id)
        if not self._tokenize:
            return None
        try:
            if model_id not in self._baseline:  # tokens the server adds to any text (BOS)
                self._baseline[model_id] = self._tokenize(model_id, "")  # type: ignore[operator]
            return max(0, self._tokenize(model_id, text) - self._baseline[model_id])  # type: ignore[operator]
        except (HTTPFailure, ValueError, KeyError, TypeError):
            return None

    # -- models
    def served_id(self, name: str, listed: list[str]) -> str | None:
        if not listed or name in listed:
            return name
        if f"{name}:latest" in listed:  # Ollama names a model without a tag 'x:latest'
            return f"{name}:latest"
        return None

    # -- memory of a server on this machine (the process tree listening on the loopback port)
    @contextlib.contextmanager
    def watch_memory(self) -> Iterator[MemoryReading | None]:
        if self._process is None:
            yield None
            return
        pid, name = self._process
        with watch_process(pid, f"process tree of {name} (pid {pid}), which serves the endpoint; "
                                "it may hold other models too") as reading:
            yield reading

    def died(self) -> str | None:
        if self._process is not None:
            pid, name = self._process
            if not psutil.pid_exists(pid):
                return f"the server process {name} (pid {pid}) behind {self.conn.shown if self.conn else 'the endpoint'} exited"
        return self.stopped_answering()
