"""Statistics computed from raw samples on load (pure functions; no I/O).

Only successful, non-warmup requests enter latency statistics; failures are counted, never
averaged in as zeros.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Iterable

import numpy as np

from bench.results.metrics import METRICS, decode_tps, e2e_tps, tpot  # noqa: F401 (defined there)
from bench.results.schema import Run, Sample


def percentiles(values: Iterable[float], ps: Iterable[float]) -> list[float]:
    """Percentiles with linear interpolation (numpy's default): the one implementation bench uses."""
    return [float(x) for x in np.percentile(np.asarray(list(values), dtype=float), list(ps))]


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
        p50, p95, p99 = percentiles(a, (50, 95, 99))
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


@dataclass(frozen=True)
class ModelStats:
    """One model's figures in one run: counts, and a distribution per registered metric
    (``stats.ttft``, ``stats.metrics["ttft"]``)."""

    model: str
    requests: int
    ok: int
    failed: int
    errors: dict[str, int]
    metrics: dict[str, Dist]
    tokens_sources: list[str]
    over_limit: int
    streamed: bool
    extra: dict = field(default_factory=dict)

    def __getattr__(self, name: str) -> Dist:
        metrics = self.__dict__.get("metrics", {})
        if name in metrics:
            return metrics[name]
        raise AttributeError(name)

    def as_dict(self) -> dict:
        d = asdict(self)
        return {**{k: v for k, v in d.items() if k != "metrics"}, **d["metrics"]}


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
        metrics={m.id: Dist.of(m.value(s) for s in ok) for m in METRICS.values()},
        tokens_sources=sorted({s.tokens_source for s in ok if s.tokens_source}),
        over_limit=sum(1 for s in ok if s.over_limit),
        streamed=any(s.stream for s in mine),
    )


def run_stats(run: Run) -> list[ModelStats]:
    return [model_stats(key, run.samples) for key in run.models]
