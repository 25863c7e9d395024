"""bench's figures beside the server's own account of the same requests, and where they disagree.

A server's timings (``sample.server``: llama-server's ``timings``, Ollama's ``eval_duration``,
LM Studio's ``stats``) come from its own clock; bench's from the client's. They measure
different spans, so they agree only within a tolerance, documented here and in
site_src/methodology.md:

* decode rate: bench's per-request decode tokens/s (tokens after the first over the time after
  the first) against the server's decode tokens over its decode seconds, median over the requests
  that have both. They disagree when the ratio of the medians is outside [1/(1+t), 1+t] with
  t = ``DECODE_TOLERANCE`` (25 %): beyond network jitter and chunking, one of the two counts
  tokens or time differently (a server batching tokens into chunks, a tokenizer mismatch, a
  clock that includes or leaves out sampling).
* time to first token: bench's TTFT includes the server's prefill plus the first decode step,
  queueing and the network, so it must be at least the server's prefill time. They disagree
  when bench's median TTFT is below the server's median prefill by more than ``CLOCK_SLACK_S``
  (impossible unless one clock is wrong), or above it by more than ``TTFT_SLACK_S`` plus
  ``TTFT_FACTOR`` times the prefill (time the server does not account for: queueing, a proxy).
  Paired requests (a second, untimed request) are compared on decode rate only: their prefill
  is another request's.
* prompt cache: in a cold run, a server that took more than ``CACHED_SHARE`` of the prompt
  tokens from its cache measured cached prefill.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from statistics import median

from bench.results.metrics import decode_tps
from bench.results.schema import Run

DECODE_TOLERANCE = 0.25
CLOCK_SLACK_S = 0.010
TTFT_SLACK_S = 0.100
TTFT_FACTOR = 0.5
CACHED_SHARE = 0.5  # a cold run whose prompts the server mostly took from its cache (a chat template's
#                     shared opening is a few tokens; more than half means the prompt itself was reused)


@dataclass
class ServerView:
    """One model's comparison (medians over the measured requests that have both figures)."""

    model: str
    sources: list[str]
    paired: bool
    n: int
    ours_decode_tps: float | None = None
    server_decode_tps: float | None = None
    ours_ttft_s: float | None = None
    server_prefill_s: float | None = None
    cached_share: float | None = None  # of prompt tokens, the share the server took from its cache
    flags: list[str] = field(default_factory=list)

    @property
    def decode_ratio(self) -> float | None:
        if self.ours_decode_tps and self.server_decode_tps:
            return self.ours_decode_tps / self.server_decode_tps
        return None


def _med(values: list[float]) -> float | None:
    return median(values) if values else None


def server_views(run: Run) -> dict[str, ServerView]:
    """model -> how bench's figures compare with the server's own, for models that have any."""
    out: dict[str, ServerView] = {}
    for model in run.models:
        samples = [s for s in run.samples if s.model == model and s.ok and not s.warmup and s.server is not None]
        if not samples:
            continue
        ours_d, theirs_d, ours_t, theirs_t = [], [], [], []
        for s in samples:
            t, d = s.server, decode_tps(s)
            if d and t.decode_tokens and t.decode_s:
                ours_d.append(d)
                theirs_d.append(t.decode_tokens / t.decode_s)
            if s.ttft_s is not None and t.prompt_s is not None and not t.paired:
                ours_t.append(s.ttft_s)
                theirs_t.append(t.prompt_s)
        view = ServerView(model, sorted({s.server.source for s in samples}), any(s.server.paired for s in samples),
                          len(samples), _med(ours_d), _med(theirs_d), _med(ours_t), _med(theirs_t),
                          _cached_share(samples))
        view.flags = _flags(view, run.workload.prompt_cache)
        out[model] = view
    return out


def _cached_share(samples: list) -> float | None:
    """llama.cpp counts processed (prompt_n) and reused (cache_n) prompt tokens apart."""
    cached = sum(s.server.cached_tokens or 0 for s in samples if s.server.cached_tokens is not None)
    processed = sum(s.server.prompt_tokens or 0 for s in samples if s.server.cached_tokens is not None)
    return cached / (cached + processed) if cached + processed else None


def _flags(v: ServerView, prompt_cache: str) -> list[str]:
    flags = []
    ratio = v.decode_ratio
    if ratio is not None and not 1 / (1 + DECODE_TOLERANCE) <= ratio <= 1 + DECODE_TOLERANCE:
        flags.append(f"decode rate: bench measured {v.ours_decode_tps:.1f} tokens/s, the server reports "
                     f"{v.server_decode_tps:.1f} ({ratio:.2f}×, outside ±{DECODE_TOLERANCE:.0%})")
    if v.ours_ttft_s is not None and v.server_prefill_s is not None:
        gap = v.ours_ttft_s - v.server_prefill_s
        if gap < -CLOCK_SLACK_S:
            flags.append(f"time to first token: bench saw the first token after {v.ours_ttft_s * 1000:.0f} ms, before "
                         f"the server says its prefill ended ({v.server_prefill_s * 1000:.0f} ms): one clock is wrong")
        elif gap > TTFT_SLACK_S + TTFT_FACTOR * v.server_prefill_s:
            flags.append(f"time to first token: bench measured {v.ours_ttft_s * 1000:.0f} ms, the server's prefill took "
                         f"{v.server_prefill_s * 1000:.0f} ms: {gap * 1000:.0f} ms the server does not account for "
                         "(queueing, a proxy, the network)")
    if v.cached_share is not None and v.cached_share > CACHED_SHARE and prompt_cache == "cold":
        flags.append(f"the server took {v.cached_share:.0%} of the prompt tokens from its cache in a cold run: "
                     "its TTFT is partly a cache benchmark")
    return flags
