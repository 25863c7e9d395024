"""One benchmark request: the timed exchange (``bench.measure.client``), retried on 429/5xx with
backoff, its tokens counted (usage, the runtime's tokenizer, a usage probe, or chunks), and the
result as a :class:`~bench.results.schema.Sample`."""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass
from typing import Any, Callable

import openai

from bench.config import Endpoint, Generation
from bench.measure.client import (
    RETRYABLE,
    Measurement,
    connection,
    measure_plain,
    measure_stream,
)
from bench.measure.stream import Limits
from bench.results.schema import Attempt, Sample, ServerTimings, utcnow
from bench.runtimes import Runtime
from bench.runtimes.generic import OpenAICompatible

# ----------------------------------------------------------------------------- token counting


class TokenCounter:
    """Counts tokens when the server's stream carried no usage, by the best means available.

    1. the runtime's tokenizer (``Runtime.count_tokens``: llama-cpp-python ``/extras/tokenize``,
       llama.cpp and vLLM ``/tokenize``, ...);
    2. a non-streamed usage probe of the same request, trusted only when it returns the very
       same text (deterministic settings);
    3. the number of content chunks, the last resort (wrong when chunks carry several tokens).
    """

    def __init__(self, endpoint: Endpoint, client: openai.OpenAI, env: Any, timeout_s: float,
                 runtime: Runtime | None = None):
        self.client = client
        self.timeout_s = timeout_s
        self.runtime = runtime or OpenAICompatible(connection(client))
        self._probes: dict[tuple[str, str], tuple[str, Any]] = {}
        self._prompt_tokens: dict[tuple[str, str], int | None] = {}

    def count_tokens(self, model: str, text: str) -> int | None:
        return self.runtime.count_tokens(model, text)

    def prompt_tokens(self, model: str, messages: list[dict], gen: Generation) -> int | None:
        """Prompt tokens (chat template included) from a cheap non-streamed 1-token request."""
        key = (model, json.dumps(messages))
        if key not in self._prompt_tokens:
            # Bounded like the measured request: a server that ignores max_tokens 1 still counts the prompt.
            one = gen.model_copy(update={"max_tokens": 1})
            m = measure_plain(self.client, model, messages, one, self.timeout_s, limits=Limits.for_max_tokens(gen.max_tokens))
            self._prompt_tokens[key] = getattr(m.usage, "prompt_tokens", None) if m.error is None else None
        return self._prompt_tokens[key]

    def usage_probe(self, model: str, messages: list[dict], gen: Generation) -> tuple[str, Any]:
        key = (model, json.dumps(messages))
        if key not in self._probes:
            m = measure_plain(self.client, model, messages, gen, self.timeout_s)
            self._probes[key] = (m.output, m.usage if m.error is None else None)
        return self._probes[key]


def count_completion(
    m: Measurement, counter: TokenCounter | None, model: str, messages: list[dict], gen: Generation
) -> tuple[int | None, int | None, str | None]:
    """(completion_tokens, prompt_tokens, tokens_source) for a successful measurement."""
    usage = m.usage
    if usage is not None and getattr(usage, "completion_tokens", None) is not None:
        return usage.completion_tokens, getattr(usage, "prompt_tokens", None), "usage"
    if counter is not None:
        n = counter.count_tokens(model, m.reasoning + m.output)
        if n is not None:
            return n, counter.prompt_tokens(model, messages, gen), "tokenize"
        if gen.temperature == 0:
            text, pusage = counter.usage_probe(model, messages, gen)
            if pusage is not None and text == m.output and pusage.completion_tokens is not None:
                return pusage.completion_tokens, pusage.prompt_tokens, "usage_probe"
    return len(m.chunk_times), None, "chunks"


# ----------------------------------------------------------------------------- one request with retries


@dataclass
class RequestOptions:
    gen: Generation
    timeout_s: float
    stall_timeout_s: float
    retries: int
    backoff_s: float = 1.0
    max_backoff_s: float = 30.0


def _measure_with_retries(
    client: openai.OpenAI, model: str, messages: list[dict], opts: RequestOptions, sleep: Callable[[float], None]
) -> tuple[Measurement, list[Attempt]]:
    """The last attempt's Measurement, and every attempt (429/5xx are retried with backoff)."""
    attempts: list[Attempt] = []
    for n in range(opts.retries + 1):
        if opts.gen.stream:
            m = measure_stream(client, model, messages, opts.gen, opts.timeout_s, opts.stall_timeout_s)
        else:
            m = measure_plain(client, model, messages, opts.gen, opts.timeout_s)
        attempts.append(
            Attempt(
                error=m.error,
                http_status=m.http_status,
                detail=m.detail,
                elapsed_s=m.elapsed_ns / 1e9,
                retry_after_s=m.retry_after_s,
            )
        )
        if m.error not in RETRYABLE or n == opts.retries:
            break
        wait = m.retry_after_s if m.retry_after_s is not None else opts.backoff_s * (2**n)
        sleep(min(wait, opts.max_backoff_s))
    return m, attempts


def run_request(
    client: openai.OpenAI,
    counter: TokenCounter | None,
    model: str,
    prompt_id: str,
    prompt_text: str,
    opts: RequestOptions,
    *,
    round: int,
    warmup: bool,
    sleep: Callable[[float], None] = time.sleep,
    server_timings: Callable[[dict], ServerTimings | None] | None = None,
) -> Sample:
    """Send one request (retrying 429/5xx with backoff) and return its Sample. Nothing a server
    sends raises: every failure is a failed Sample with its kind and a short detail.
    ``server_timings`` reads a ``timings`` object the answer carried (the runtime's own format)."""
    messages = [{"role": "user", "content": prompt_text}]
    started_at = utcnow()
    m, attempts = _measure_with_retries(client, model, messages, opts, sleep)
    completion = prompt_tokens = source = None
    if m.error is None:
        completion, prompt_tokens, source = count_completion(m, counter, model, messages, opts.gen)
        cap = Limits.for_max_tokens(opts.gen.max_tokens).token_cap
        if completion is not None and completion > cap:  # counted past the cap: not a success
            m.error = attempts[-1].error = "runaway"
            m.detail = attempts[-1].detail = f"{completion} completion tokens ({source}), more than {cap} (4 x max_tokens)"
    sample = Sample(
        model="",  # filled by the caller (the model's label)
        prompt_id=prompt_id,
        round=round,
        warmup=warmup,
        ok=m.error is None,
        error=m.error,
        error_detail=m.detail,
        started_at=started_at,
        stream=opts.gen.stream,
        output=m.output,
        reasoning=m.reasoning,
        finish_reason=m.finish_reason,
        resolved_model=m.resolved_model,
        attempts=attempts,
        chunks=len(m.chunk_times),
    )
    if m.error is None:
        sample.e2e_s = m.e2e_ns / 1e9 if m.e2e_ns is not None else None
        if opts.gen.stream and m.ttft_ns is not None:
            sample.ttft_s = m.ttft_ns / 1e9
            sample.itl_s = [(b - a) / 1e9 for a, b in zip(m.chunk_times, m.chunk_times[1:])]
        sample.completion_tokens = completion
        sample.prompt_tokens = prompt_tokens
        sample.tokens_source = source  # type: ignore[assignment]
        sample.over_limit = completion is not None and completion > opts.gen.max_tokens
        if m.timings is not None and server_timings is not None:
            with contextlib.suppress(Exception):  # noqa: BLE001 - a server's junk never fails a request
                sample.server = server_timings(m.timings)
    return sample
