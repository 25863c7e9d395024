"""Statistics computed from raw samples on load (pure functions; no I/O).

Only successful, non-warmup requests enter latency statistics; failures are counted, never
averaged in as zeros.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Iterable

import numpy as np

from bench.results.schema import Run, Sample


@dataclass(frozen=True)
class Dist:
    """Summary of one metric's values (seconds or tokens/s)."""

    n: int
    mean: float | None
    p50: float | None
    p95: float | None
    p99: float | None
    min: float | None
    max: float | None
    std: float | None

    @classmethod
    def of(cls, values: Iterable[float]) -> "Dist":
        a = np.asarray([v for v in values if v is not None], dtype=float)
        if a.size == 0:
            return cls(0, None, None, None, None, None, None, None)
        p50, p95, p99 = (float(x) for x in np.percentile(a, [50, 95, 99]))
        return cls(
            n=int(a.size),
            mean=float(a.mean()),
            p50=p50,
            p95=p95,
            p99=p99,
            min=float(a.min()),
            max=float(a.max()),
            std=float(a.std(ddof=1)) if a.size > 1 else None,
        )


def decode_tps(s: Sample) -> float | None:
    """Decode tokens/s = (completion_tokens - 1) / (e2e - TTFT).

    The first token arrives at TTFT; the remaining tokens are decoded in e2e - TTFT. Prompt
    tokens are never in the numerator.
    """
    if not s.ok or s.ttft_s is None or s.e2e_s is None or not s.completion_tokens:
        return None
    span = s.e2e_s - s.ttft_s
    if s.completion_tokens < 2 or span <= 0:
        return None
    return (s.completion_tokens - 1) / span


def tpot(s: Sample) -> float | None:
    """Time per output token after the first: (e2e - TTFT) / (completion_tokens - 1)."""
    tps = decode_tps(s)
    return 1.0 / tps if tps else None


def e2e_tps(s: Sample) -> float | None:
    """Completion tokens / e2e: what a user waiting for the whole answer sees (no-stream runs too)."""
    if not s.ok or s.e2e_s is None or not s.completion_tokens or s.e2e_s <= 0:
        return None
    return s.completion_tokens / s.e2e_s


@dataclass(frozen=True)
class ModelStats:
    model: str
    requests: int
    ok: int
    failed: int
    errors: dict[str, int]
    ttft: Dist
    itl: Dist
    tpot: Dist
    e2e: Dist
    decode_tps: Dist
    e2e_tps: Dist
    completion_tokens: Dist
    tokens_sources: list[str]
    over_limit: int
    streamed: bool
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def measured(samples: Iterable[Sample]) -> list[Sample]:
    return [s for s in samples if not s.warmup]


def model_stats(model: str, samples: list[Sample]) -> ModelStats:
    mine = [s for s in measured(samples) if s.model == model]
    ok = [s for s in mine if s.ok]
    errors: dict[str, int] = {}
    for s in mine:
        if not s.ok and s.error:
            errors[s.error] = errors.get(s.error, 0) + 1
    return ModelStats(
        model=model,
        requests=len(mine),
        ok=len(ok),
        failed=len(mine) - len(ok),
        errors=errors,
        ttft=Dist.of(s.ttft_s for s in ok),
        itl=Dist.of(g for s in ok for g in s.itl_s),
        tpot=Dist.of(tpot(s) for s in ok),
        e2e=Dist.of(s.e2e_s for s in ok),
        decode_tps=Dist.of(decode_tps(s) for s in ok),
        e2e_tps=Dist.of(e2e_tps(s) for s in ok),
        completion_tokens=Dist.of(s.completion_tokens for s in ok),
        tokens_sources=sorted({s.tokens_source for s in ok if s.tokens_source}),
        over_limit=sum(1 for s in ok if s.over_limit),
        streamed=any(s.stream for s in mine),
    )


def run_stats(run: Run) -> list[ModelStats]:
    return [model_stats(key, run.samples) for key in run.models]
