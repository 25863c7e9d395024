"""Statistics computed from raw samples on load (pure functions; no I/O).

Only successful, non-warmup requests enter latency statistics; failures are counted, never
averaged in as zeros.
"""

from __future__ import annotations

import math
import weakref
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable

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
        n = int(a.size)
        if n == 0:
            return cls(0, None, None, None, None, None, None, None)
        p50, p95, p99 = _sorted_percentiles(a, (50, 95, 99))
        # a.mean() and a.std(ddof=1), bit for bit (the same pairwise sums), without their per-call
        # overhead: a site of 1,000 runs summarises 70,000 distributions of a few dozen values
        total = _add(a)
        mean = total / n
        std = math.sqrt(float(_add(np.square(a - total / n)) / (n - 1))) if n > 1 else None
        return cls(n=n, mean=float(mean), p50=p50, p95=p95, p99=p99, min=float(a[0]), max=float(a[-1]), std=std)


_add = np.add.reduce


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


def model_stats(model: str, samples: list[Sample], info: ModelInfo | None = None,
                values: Callable[[Metric], list[float | None]] | None = None) -> ModelStats:
    """``info``: the model's entry in the run, for model-level metrics (None: they are unknown);
    ``samples``: the run's samples, or only this model's; ``values``: a metric's value for each of
    the model's successful measured samples, in order (computed here when not given)."""
    mine = [s for s in samples if not s.warmup and s.model == model]
    ok = [s for s in mine if s.ok]
    if values is None:
        values = lambda m: [m.value(s) for s in ok]  # noqa: E731
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
        metrics={m.id: Dist.of(values(m)) for m in request_metrics() if m.value is not None},
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
    return [model_stats(key, by_model[key], info, values=lambda m, key=key: column(run, key, m)[1])
            for key, info in run.models.items()]


_COLUMNS: OrderedDict[int, tuple[weakref.ref, int, dict]] = OrderedDict()
_COLUMN_RUNS = 4  # runs whose columns are kept: a render reads one run, summarises it, slims it, moves on


def column(run: Run, model: str, metric: Metric) -> tuple[list[Sample], list[float | None]]:
    """The successful measured samples of ``model`` in ``run`` and ``metric``'s value for each.

    A run's summary (``run_stats``) and its per-prompt medians (``analysis.digest``) read the same
    values instead of each evaluating every metric over every sample. Kept for the last few runs
    asked about (same object, same number of samples), so memory stays flat."""
    entry = _COLUMNS.get(id(run))
    if entry is None or entry[0]() is not run or entry[1] != len(run.samples):
        groups: dict[str, list[Sample]] = {}
        for s in run.samples:
            if s.ok and not s.warmup:
                groups.setdefault(s.model, []).append(s)
        entry = _COLUMNS[id(run)] = (weakref.ref(run), len(run.samples), {"groups": groups})
        while len(_COLUMNS) > _COLUMN_RUNS:
            _COLUMNS.popitem(last=False)
    _COLUMNS.move_to_end(id(run))
    cache = entry[2]
    ok = cache["groups"].get(model, [])
    key = (model, metric.id)
    if key not in cache:
        fn = metric.value
        cache[key] = [fn(s) for s in ok] if fn is not None else [None] * len(ok)
    return ok, cache[key]


def forget_columns(run: Run) -> None:
    """Drop ``run``'s cached columns (its samples are being dropped)."""
    _COLUMNS.pop(id(run), None)
