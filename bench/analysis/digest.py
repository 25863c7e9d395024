"""Per-run figures that the diff, the noise model and change-point detection need again and
again, computed once per run and kept while the run is alive.

A site of 1,000 runs asks for every run's per-prompt medians of every compared metric, once for
the change points of each model and again for the noise history of each diff: grouping thousands
of samples each time made the render quadratic in practice. The cache is keyed by the run
object (dropped with it) and by how many samples it had, so a run still being collected is
never served stale figures.
"""

from __future__ import annotations

import math
import weakref
from typing import Callable

import numpy as np

from bench.results.metrics import Metric
from bench.results.schema import Run, Sample
from bench.results.stats import column, forget_columns

_CACHE: dict[int, dict[tuple, dict[str, float]]] = {}


def by_prompt(samples: list[Sample], fn: Callable[[Sample], float | None]) -> dict[str, np.ndarray]:
    """The positive, finite values of ``fn`` over the successful samples, per prompt."""
    out: dict[str, list[float]] = {}
    for s in samples:
        if s.ok:
            v = fn(s)
            if v is not None and v > 0 and math.isfinite(v):
                out.setdefault(s.prompt_id, []).append(v)
    return {k: np.asarray(v) for k, v in out.items()}


def _median(values: list[float]) -> float:
    """np.median's value, bit for bit (the mean of the two middle values when their count is even)."""
    v = sorted(values)
    n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2


def prompt_medians(run: Run, model: str, metric: Metric) -> dict[str, float]:
    """Per prompt, the median of ``metric`` over the model's successful measured requests."""
    cache = _CACHE.get(id(run))
    if cache is None:
        cache = _CACHE[id(run)] = {}
        weakref.finalize(run, _CACHE.pop, id(run), None)
    frozen = id(run) in _FROZEN
    key = (model, metric.id, None if frozen else len(run.samples))
    if key not in cache:
        if frozen:
            return {}
        values: dict[str, list[float]] = {}
        for s, v in zip(*column(run, model, metric)):  # the values the run's summary read too
            if v is not None and v > 0 and math.isfinite(v):
                values.setdefault(s.prompt_id, []).append(v)
        cache[key] = {p: _median(vs) for p, vs in values.items()}
    return cache[key]


def log_stat(medians: dict[str, float], prompts: list[str]) -> float:
    """log of the geometric mean over ``prompts`` of the per-prompt medians (noise.log_stat's value)."""
    return float(np.mean(np.log([medians[p] for p in prompts])))


_FROZEN: set[int] = set()


def slim(run: Run) -> None:
    """Compute what history needs from ``run`` (every model's per-prompt medians of every compared
    metric), then drop its samples and judgements in place: a long history then fits in memory and
    still answers ``prompt_medians``. Run pages of a slimmed run show summaries only."""
    from bench.results.metrics import compared

    for model in run.models:
        for m in compared():
            prompt_medians(run, model, m)
    adopt(run, {(*k[:2], None): v for k, v in _CACHE.get(id(run), {}).items()})
    forget_columns(run)
    run.samples = []
    run.judgements = []


def slim_digest(run: Run) -> dict[tuple, dict[str, float]]:
    """What a slimmed run answers (its per-prompt medians), to hand to ``adopt`` in another process."""
    return {k: v for k, v in _CACHE.get(id(run), {}).items() if k[2] is None}


def adopt(run: Run, medians: dict[tuple, dict[str, float]]) -> None:
    """Freeze ``run``'s per-prompt medians: from now on ``prompt_medians`` answers from ``medians``
    whatever its samples (``slim`` drops them; a run read in a worker process arrives without)."""
    if id(run) not in _CACHE:
        weakref.finalize(run, _CACHE.pop, id(run), None)
    _CACHE[id(run)] = dict(medians)
    if id(run) not in _FROZEN:
        _FROZEN.add(id(run))
        weakref.finalize(run, _FROZEN.discard, id(run))
