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
    concurrency: int | None  # a closed-loop level: streams in flight
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
    rate: float | None = None  # an open-loop level: offered requests/s
    dropped: int = 0  # open loop: arrivals over the in-flight cap, not sent
    lag_p95: float | None = None  # open loop: how late bench sent requests after their arrival time

    @property
    def key(self) -> str:
        if self.concurrency is not None:
            return f"{self.concurrency} stream{'s' if self.concurrency != 1 else ''}"
        return f"{self.rate:g}/s"

    @property
    def order(self) -> float:
        return float(self.concurrency if self.concurrency is not None else self.rate or 0.0)

    def as_dict(self) -> dict:
        return {**self.__dict__, "key": self.key}


def _t(s: Sample) -> float:
    return datetime.fromisoformat(s.started_at.replace("Z", "+00:00")).timestamp()


def _pct(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def levels(run: Run, model: str) -> list[Level]:
    """The model's levels, closed-loop ones by streams and open-loop ones by rate, each ascending
    (empty for a run without levels)."""
    by: dict[tuple[str, float], list[Sample]] = {}
    for s in run.samples:
        coords = s.scenario if isinstance(s.scenario, dict) else {}
        if s.model != model or s.warmup:
            continue
        for kind in ("concurrency", "rate"):
            value = coords.get(kind)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                by.setdefault((kind, value), []).append(s)
                break
    out = [_level(kind, value, ss) for (kind, value), ss in by.items()]
    return sorted(out, key=lambda x: (x.concurrency is None, x.order))


def _level(kind: str, value: float, all_samples: list[Sample]) -> Level:
    dropped = sum(1 for s in all_samples if s.error == "dropped")
    samples = [s for s in all_samples if s.error != "dropped"]
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
    lags = [s.scenario["lag_s"] for s in samples if isinstance(s.scenario.get("lag_s"), (int, float))]
    return Level(
        concurrency=int(value) if kind == "concurrency" else None, rate=float(value) if kind == "rate" else None,
        dropped=dropped, lag_p95=_pct(lags, 95), n=len(all_samples), errors=len(samples) - len(ok), wall_s=wall,
        requests_per_s=len(ok) / wall if wall else None, output_tokens_per_s=tokens / wall if wall else None,
        achieved_concurrency=sum(e2es) / wall if wall else None,
        ttft_p50=_pct(ttfts, 50), ttft_p95=_pct(ttfts, 95), itl_p50=_pct(itls, 50), itl_p95=_pct(itls, 95),
        e2e_p50=_pct(e2es, 50), e2e_p95=_pct(e2es, 95), tps_p50=_pct(tps, 50))
