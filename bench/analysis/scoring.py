"""The selection framework: six dimensions, weights and hard constraints per named profile.

Normalization is direction-aware *ratio to best* among the candidates of one run:
lower-is-better metrics score ``best / value``, higher-is-better ``value / best``; the best
candidate scores 1, one twice as slow scores 0.5. Unlike min-max scaling, the worst candidate
does not drop to 0 and adding a candidate does not stretch everyone else's score.
A dimension without data is *missing*: it is left out of the weighted mean (the remaining weights
are renormalized) and shown as missing, never as zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np

# Profiles are configuration; the framework's API takes them, so its names are re-exported here.
from bench.config.profiles import (  # noqa: F401
    COMMERCIAL_LICENSES,
    DEFAULT_PROFILES,
    DEFAULT_WEIGHTS,
    DIMENSION_INFO,
    DIMENSIONS,
    LICENSE_ALLOWANCE,
    Constraints,
    Profile,
)
from bench.results.metrics import METRICS
from bench.results.schema import ModelInfo, Run
from bench.results.stats import ModelStats, run_stats


@dataclass(frozen=True)
class Candidate:
    """What the framework knows about one model in one run (None = missing)."""

    model: str
    e2e_mean_s: float | None
    e2e_p95_s: float | None
    ttft_p50_s: float | None
    decode_tps: float | None
    memory_bytes: float | None
    disk_bytes: float | None
    quality: float | None
    quality_sources: tuple[str, ...]
    license: str | None


@dataclass
class Scored:
    model: str
    total: float | None
    coverage: float  # share of the profile's weight that had data
    sub: dict[str, float | None]  # dimension -> 0..1 sub-score
    excluded: list[str] = field(default_factory=list)  # failed hard constraints
    missing: list[str] = field(default_factory=list)
    rank: int | None = None


@dataclass
class Ranking:
    profile: str
    description: str
    weights: dict[str, float]
    rows: list[Scored]  # eligible first, by total descending; excluded last
    robustness: float | None  # share of perturbed weightings under which the top pick stays first
    perturbations: int

    @property
    def top(self) -> Scored | None:
        return self.rows[0] if self.rows and self.rows[0].rank == 1 else None


def candidates(run: Run, quality: Mapping[str, tuple[float, tuple[str, ...]]] | None = None,
               stats: list[ModelStats] | None = None) -> list[Candidate]:
    out = []
    for ms in stats or run_stats(run):
        info = run.models[ms.model]
        if ms.ok == 0:
            continue
        q = (quality or {}).get(ms.model)
        out.append(Candidate(
            model=ms.model,
            e2e_mean_s=ms.e2e.mean,
            e2e_p95_s=ms.e2e.p95,
            ttft_p50_s=ms.ttft.p50,
            decode_tps=ms.decode_tps.p50,
            memory_bytes=_model_figure("peak_rss_bytes", info) or None,  # 0: not measured
            disk_bytes=_model_figure("disk_bytes", info),
            quality=q[0] if q else None,
            quality_sources=q[1] if q else (),
            license=info.license,
        ))
    return out


def _model_figure(metric_id: str, info: ModelInfo) -> float | None:
    """A model-level figure as the metric registry reads it (memory, disk)."""
    metric = METRICS.get(metric_id)
    return metric.of_model(info) if metric is not None and metric.of_model is not None else None


def _ratio(values: dict[str, float | None], higher_better: bool) -> dict[str, float | None]:
    present = [v for v in values.values() if v is not None and v > 0 and math.isfinite(v)]
    if not present:
        return {k: None for k in values}
    best = max(present) if higher_better else min(present)
    out: dict[str, float | None] = {}
    for k, v in values.items():
        if v is None or not math.isfinite(v) or v <= 0:
            out[k] = 0.0 if (v is not None and v <= 0 and higher_better) else None
        else:
            out[k] = v / best if higher_better else best / v
    return out


def license_allowance(license: str | None, overrides: Mapping[str, float]) -> float | None:
    if not license:
        return None
    key = license.strip().lower()
    table = {**LICENSE_ALLOWANCE, **{k.lower(): v for k, v in overrides.items()}}
    return table.get(key)


def sub_scores(cands: list[Candidate], profile: Profile) -> dict[str, dict[str, float | None]]:
    """model -> dimension -> 0..1 sub-score (None when missing)."""
    by = {c.model: c for c in cands}
    mean = _ratio({m: c.e2e_mean_s for m, c in by.items()}, higher_better=False)
    p95 = _ratio({m: c.e2e_p95_s for m, c in by.items()}, higher_better=False)
    per_dim = {
        "throughput": _ratio({m: c.decode_tps for m, c in by.items()}, higher_better=True),
        "memory": _ratio({m: c.memory_bytes for m, c in by.items()}, higher_better=False),
        "quality": {m: c.quality for m, c in by.items()},
        "footprint": _ratio({m: c.disk_bytes for m, c in by.items()}, higher_better=False),
        "license": {m: license_allowance(c.license, profile.license_allowance) for m, c in by.items()},
    }
    out = {}
    for m in by:
        lat = [x for x in (mean[m], p95[m]) if x is not None]
        out[m] = {"latency": sum(lat) / len(lat) if lat else None, **{d: per_dim[d][m] for d in per_dim}}
    return out


def _violations(c: Candidate, cons: Constraints) -> list[str]:
    """Hard constraints a candidate breaks. Unknown data cannot satisfy a constraint: it is a
    violation too ("memory unknown"), so a model is never picked on figures nobody measured."""
    v = []
    mib = 2**20

    def check(limit: float | None, value: float | None, name: str, text: Callable[[float], str]) -> None:
        if not limit:
            return
        if value is None:
            v.append(f"{name} unknown: cannot check the limit")
        elif text(value):
            v.append(text(value))

    check(cons.max_memory_mb, c.memory_bytes, "memory",
          lambda x: f"memory {x / mib:.0f} MiB > {cons.max_memory_mb:g} MiB" if x / mib > cons.max_memory_mb else "")
    check(cons.max_disk_mb, c.disk_bytes, "disk",
          lambda x: f"disk {x / mib:.0f} MiB > {cons.max_disk_mb:g} MiB" if x / mib > cons.max_disk_mb else "")
    check(cons.max_ttft_ms, c.ttft_p50_s, "TTFT",
          lambda x: f"TTFT p50 {x * 1000:.0f} ms > {cons.max_ttft_ms:g} ms" if x * 1000 > cons.max_ttft_ms else "")
    check(cons.min_decode_tps, c.decode_tps, "decode speed",
          lambda x: f"decode {x:.1f} tok/s < {cons.min_decode_tps:g}" if x < cons.min_decode_tps else "")
    if cons.allowed_licenses is not None:
        allowed = {x.lower() for x in cons.allowed_licenses}
        if (c.license or "").lower() not in allowed:
            v.append(f"license {c.license or 'unknown'} not allowed")
    return v


def _totals(sub: dict[str, dict[str, float | None]], weights: Mapping[str, float]) -> dict[str, tuple[float | None, float]]:
    wsum = sum(weights.values())
    out = {}
    for m, s in sub.items():
        have = [(weights.get(d, 0.0), v) for d, v in s.items() if v is not None and weights.get(d, 0.0) > 0]
        w = sum(x for x, _ in have)
        out[m] = (sum(x * v for x, v in have) / w if w > 0 else None, w / wsum if wsum else 0.0)
    return out


def rank(cands: list[Candidate], name: str, profile: Profile, *, perturbations: int = 1000, seed: int = 0) -> Ranking:
    weights = {d: float(profile.weights.get(d, 0.0)) for d in DIMENSIONS}
    sub = sub_scores(cands, profile)
    totals = _totals(sub, weights)
    rows = []
    for c in cands:
        total, coverage = totals[c.model]
        rows.append(Scored(
            model=c.model, total=total, coverage=coverage, sub=sub[c.model],
            excluded=_violations(c, profile.constraints),
            missing=[d for d in DIMENSIONS if weights[d] > 0 and sub[c.model][d] is None],
        ))
    eligible = sorted((r for r in rows if not r.excluded and r.total is not None), key=lambda r: (-r.total, r.model))
    for i, r in enumerate(eligible, 1):
        r.rank = i
    rest = [r for r in rows if r not in eligible]
    robustness = None
    if len(eligible) >= 2 and perturbations > 0:
        robustness = _robustness(eligible, sub, weights, perturbations, seed)
    elif len(eligible) == 1:
        robustness = 1.0
    return Ranking(profile=name, description=profile.description, weights=weights, rows=eligible + rest,
                   robustness=robustness, perturbations=perturbations)


def _robustness(eligible: list[Scored], sub: dict, weights: dict[str, float], n: int, seed: int) -> float:
    """Share of n random weightings (each weight times a lognormal factor, sigma 0.5) that keep the top pick first."""
    rng = np.random.default_rng(seed)
    dims = [d for d in DIMENSIONS if weights[d] > 0]
    base = np.array([weights[d] for d in dims])
    models = [r.model for r in eligible]
    values = np.array([[sub[m][d] if sub[m][d] is not None else np.nan for d in dims] for m in models])
    present = ~np.isnan(values)
    filled = np.nan_to_num(values)
    factors = rng.lognormal(0.0, 0.5, size=(n, len(dims)))
    w = factors * base  # n x d
    num = w @ (filled * present).T  # n x models
    den = w @ present.T
    with np.errstate(invalid="ignore", divide="ignore"):
        totals = np.where(den > 0, num / den, -np.inf)
    winners = np.argmax(totals, axis=1)
    return float(np.mean(winners == 0))
