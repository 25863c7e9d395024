"""A load run, level by level: what each concurrency level delivered.

Per model and level (the ``concurrency`` coordinate of its samples), over the measured requests:
requests/s and output tokens/s (completed in the level's wall time, from the first measured
request's start to the last one's end), TTFT / ITL / e2e percentiles, errors, and the achieved
concurrency: the mean number of measured requests in flight over the level (the sum of their
durations over the level's wall time, Little's law). An achieved concurrency well below the level
means bench did not keep that many streams in flight (dispatch lag), and says so rather than hide it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np

from bench.results.metrics import decode_tps, itl
from bench.results.schema import Run, Sample


@dataclass
class Level:
    concurrency: int
    n: int
    errors: int
    wall_s: float | None
    requests_per_s: float | None
    output_tokens_per_s: float | None
    achieved_concurrency: float | None
    ttft_p50: float | None
    ttft_p95: float | None
    itl_p50: float | None
    itl_p95: float | None
    e2e_p50: float | None
    e2e_p95: float | None
    tps_p50: float | None  # a request's decode tokens/s: what one user sees

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _t(s: Sample) -> float:
    return datetime.fromisoformat(s.started_at.replace("Z", "+00:00")).timestamp()


def _pct(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def levels(run: Run, model: str) -> list[Level]:
    """The model's levels in the order they ran (empty for a run without levels)."""
    by: dict[int, list[Sample]] = {}
    for s in run.samples:
        level = s.scenario.get("concurrency") if isinstance(s.scenario, dict) else None
        if s.model == model and not s.warmup and isinstance(level, int) and not isinstance(level, bool):
            by.setdefault(level, []).append(s)
    return [_level(c, ss) for c, ss in by.items()]


def _level(concurrency: int, samples: list[Sample]) -> Level:
    ok = [s for s in samples if s.ok and s.e2e_s is not None]
    wall = None
    if ok:
        start = min(_t(s) for s in ok)
        wall = max(_t(s) + s.e2e_s for s in ok) - start
        wall = wall if wall > 0 else None
    ttfts = [s.ttft_s for s in ok if s.ttft_s is not None]
    itls = [v for v in (itl(s) for s in ok) if v is not None]
    e2es = [s.e2e_s for s in ok]
    tps = [v for v in (decode_tps(s) for s in ok) if v is not None]
    tokens = sum(s.completion_tokens or 0 for s in ok)
    return Level(
        concurrency=concurrency, n=len(samples), errors=len(samples) - len(ok), wall_s=wall,
        requests_per_s=len(ok) / wall if wall else None, output_tokens_per_s=tokens / wall if wall else None,
        achieved_concurrency=sum(e2es) / wall if wall else None,
        ttft_p50=_pct(ttfts, 50), ttft_p95=_pct(ttfts, 95), itl_p50=_pct(itls, 50), itl_p95=_pct(itls, 95),
        e2e_p50=_pct(e2es, 50), e2e_p95=_pct(e2es, 95), tps_p50=_pct(tps, 50))
