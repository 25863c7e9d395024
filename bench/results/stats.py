"""Statistics computed from raw samples on load (pure functions; no I/O).

Only successful, non-warmup requests enter latency statistics; failures are counted, never
averaged in as zeros.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Iterable

import numpy as np

from bench.results.metrics import (  # noqa: F401 (decode_tps, e2e_tps, tpot: defined there)
    Metric,
    decode_tps,
    e2e_tps,
    model_metrics,
    request_metrics,
    tpot,
)
from bench.results.schema import ModelInfo, Run, Sample


def percentiles(values: Iterable[float], ps: Iterable[float]) -> list[float]:
    """Percentiles with linear interpolation (numpy's default method): the one definition bench
    uses. One sort and a few lookups: np.percentile's per-call overhead dominated site renders."""
    a = np.sort(np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=float))
    return _sorted_percentiles(a, ps)


def _sorted_percentiles(a: np.ndarray, ps: Iterable[float]) -> list[float]:
    n = a.size
    if n == 0:
        raise ValueError("percentiles of no values")
    out = []
    for p in ps:
        pos = (n - 1) * (p / 100.0)
        lo = int(math.floor(pos))
        hi = min(lo + 1, n - 1)
        frac = pos - lo
        x, y = float(a[lo]), float(a[hi])
        # numpy's _lerp: the formula switches side at 0.5 so the endpoints are exact
        out.append(x + (y - x) * frac if frac < 0.5 else y - (y - x) * (1 - frac))
    return out


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
        a = np.sort(np.array([v for v in values if v is not None], dtype=float))
        if a.size == 0:
            return cls(0, None, None, None, None, None, None, None)
        p50, p95, p99 = _sorted_percentiles(a, (50, 95, 99))
        return cls(
            n=int(a.size),
            mean=float(a.mean()),
            p50=p50,
            p95=p95,
            p99=p99,
            min=float(a[0]),
            max=float(a[-1]),
            std=float(a.std(ddof=1)) if a.size > 1 else None,
        )


@dataclass(frozen=True)
class ModelStats:
    """One model's figures in one run: counts, a distribution per registered request-level metric
    (``stats.ttft``, ``stats.metrics["ttft"]``) and the value of each model-level one
    (``stats.facts["disk_bytes"]``)."""

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
    facts: dict[str, float | None] = field(default_factory=dict)

    def figure(self, metric: Metric, stat: str) -> float | None:
        """One statistic of a request-level metric, or a model-level metric's value."""
        if metric.level == "model":
            return self.facts.get(metric.id)
        dist = self.metrics.get(metric.id)
        return getattr(dist, stat) if dist is not None else None

    def __getattr__(self, name: str) -> Dist:
        metrics = self.__dict__.get("metrics", {})
        if name in metrics:
            return metrics[name]
        raise AttributeError(name)

    def as_dict(self) -> dict:
        d = asdict(self)
        return {**{k: v for k, v in d.items() if k not in ("metrics", "facts")}, **d["metrics"], **d["facts"]}


def measured(samples: Iterable[Sample]) -> list[Sample]:
    return [s for s in samples if not s.warmup]


def model_stats(model: str, samples: list[Sample], info: ModelInfo | None = None) -> ModelStats:
    """``info``: the model's entry in the run, for model-level metrics (None: they are unknown);
    ``samples``: the run's samples, or only this model's."""
    mine = [s for s in samples if not s.warmup and s.model == model]
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
        metrics={m.id: Dist.of([m.value(s) for s in ok]) for m in request_metrics() if m.value is not None},
        tokens_sources=sorted({s.tokens_source for s in ok if s.tokens_source}),
        over_limit=sum(1 for s in ok if s.over_limit),
        streamed=any(s.stream for s in mine),
        facts={m.id: m.of_model(info) if info is not None and m.of_model else None for m in model_metrics()},
    )


def run_stats(run: Run) -> list[ModelStats]:
    by_model: dict[str, list[Sample]] = {key: [] for key in run.models}
    for s in run.samples:
        if s.model in by_model:
            by_model[s.model].append(s)
    return [model_stats(key, by_model[key], info) for key, info in run.models.items()]
