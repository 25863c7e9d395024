"""How many users a model serves on this machine: service-level objectives over a load run.

An SLO is a list of bounds, ``ttft_p95<=0.5,itl_p95<=0.05,tps_p50>=20``: a term (``ttft``,
``itl`` a request's mean inter-token gap, ``e2e``, all in seconds, or ``tps`` a request's decode
tokens/s, a lower bound), a percentile (``_p50``, ``_p95``, ``_p99``), ``<=`` or ``>=`` and a
number. A request is *good* when its own values meet every bound; a level *passes* when the
stated percentiles over its requests meet them (and none failed). Goodput is good requests per
second. The capacity is the largest level at which this and every lower level passes; the knee
is the last level after which output tokens/s grow by less than ``KNEE_GAIN`` while ITL p50
rises by more than ``KNEE_RISE``: more users from there on only make everyone slower.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from bench.analysis.load import Level, levels
from bench.errors import ConfigError
from bench.results.metrics import decode_tps, itl
from bench.results.schema import Run, Sample

TERMS = {"ttft": ("TTFT", "s"), "itl": ("ITL", "s"), "e2e": ("end-to-end", "s"), "tps": ("decode", "tok/s")}
_BOUND = re.compile(r"^\s*(ttft|itl|e2e|tps)_p(50|95|99)\s*(<=|>=)\s*([0-9]+(?:\.[0-9]+)?)\s*$")
# Runtimes that answer one request at a time: more streams only queue (said with their results).
SERIAL = {"foundry": "Foundry Local serves one request at a time by design: more users queue",
          "embedded": "llama-cpp-python's server answers one request at a time: more users queue"}
KNEE_GAIN = 0.10
KNEE_RISE = 0.20


@dataclass(frozen=True)
class Bound:
    term: str
    percentile: int
    op: str
    value: float

    def holds(self, x: float | None) -> bool:
        return x is not None and (x <= self.value if self.op == "<=" else x >= self.value)

    def text(self) -> str:
        label, unit = TERMS[self.term]
        shown = f"{self.value * 1000:g} ms" if unit == "s" and self.value < 1 else f"{self.value:g} {unit}"
        if self.term == "tps":
            return f"{'≥' if self.op == '>=' else '≤'} {self.value:g} tok/s per user (p{self.percentile})"
        return f"{label} p{self.percentile} {'≤' if self.op == '<=' else '≥'} {shown}"


def parse_slo(text: str) -> list[Bound]:
    """``ttft_p95<=0.5,tps_p50>=20`` -> bounds; a one-line ConfigError that says the grammar."""
    bounds = []
    for part in [p for p in text.split(",") if p.strip()]:
        m = _BOUND.match(part)
        if m is None:
            raise ConfigError(f"SLO term {part.strip()!r} is not TERM_pNN<=NUMBER or >=NUMBER with TERM one of "
                              f"{', '.join(TERMS)} and NN one of 50, 95, 99 (seconds; tps in tokens/s), "
                              "e.g. --slo 'ttft_p95<=0.5,tps_p50>=20'")
        value = float(m.group(4))
        if not math.isfinite(value):
            raise ConfigError(f"SLO bound {part.strip()!r} is not a finite number")
        bounds.append(Bound(m.group(1), int(m.group(2)), m.group(3), value))
    if not bounds:
        raise ConfigError("an empty SLO: give at least one bound, e.g. --slo 'ttft_p95<=0.5'")
    return bounds


def _value(term: str, s: Sample) -> float | None:
    return {"ttft": lambda: s.ttft_s, "itl": lambda: itl(s), "e2e": lambda: s.e2e_s, "tps": lambda: decode_tps(s)}[term]()


@dataclass
class LevelVerdict:
    level: Level
    passes: bool
    good_share: float | None
    goodput: float | None  # good requests per second
    failed_bounds: list[str]

    def as_dict(self) -> dict:
        return {**self.level.as_dict(), "passes": self.passes, "good_share": self.good_share, "goodput": self.goodput,
                "failed_bounds": self.failed_bounds}


def _verdict(level: Level, samples: list[Sample], bounds: list[Bound]) -> LevelVerdict:
    ok = [s for s in samples if s.ok]
    good = [s for s in ok if all(b.holds(_value(b.term, s)) for b in bounds)]
    failed = []
    for b in bounds:
        values = [v for v in (_value(b.term, s) for s in ok) if v is not None]
        if not b.holds(float(np.percentile(values, b.percentile)) if values else None):
            failed.append(b.text())
    if level.errors:
        failed.append(f"{level.errors} failed requests")
    if level.dropped:
        failed.append(f"{level.dropped} arrivals dropped at the in-flight cap")
    share = len(good) / len(samples) if samples else None
    return LevelVerdict(level, not failed, share, len(good) / level.wall_s if level.wall_s else None, failed)


def knee(lv: list[Level]) -> Level | None:
    """Of levels of one kind, ascending: the last before throughput stops growing while ITL climbs."""
    for a, b in zip(lv, lv[1:]):
        if a.output_tokens_per_s and b.output_tokens_per_s and a.itl_p50 and b.itl_p50:
            if b.output_tokens_per_s < a.output_tokens_per_s * (1 + KNEE_GAIN) and b.itl_p50 > a.itl_p50 * (1 + KNEE_RISE):
                return a
    return None


def _largest_passing(verdicts: list[LevelVerdict]) -> Level | None:
    best = None
    for v in verdicts:
        if not v.passes:
            break
        best = v.level
    return best


def capacity(run: Run, bounds: list[Bound]) -> dict[str, dict]:
    """Per model: its levels with their verdicts, the capacity (largest passing streams and rate),
    the knee and the sentence."""
    out = {}
    for model in run.models:
        lv = levels(run, model)
        if not lv:
            continue
        verdicts = [_verdict(level, [s for s in run.samples if s.model == model and not s.warmup
                                     and _at(s, level)], bounds) for level in lv]
        closed = [v for v in verdicts if v.level.concurrency is not None]
        opened = [v for v in verdicts if v.level.rate is not None]
        best_c, best_r = _largest_passing(closed), _largest_passing(opened)
        k = knee([v.level for v in closed]) or knee([v.level for v in opened])
        serial = SERIAL.get(run.models[model].runtime or "")
        sentence = _sentence(model, bounds, best_c, best_r, closed or opened)
        out[model] = {"max_concurrency": best_c.concurrency if best_c else None,
                      "max_rate": best_r.rate if best_r else None,
                      "knee": (k.concurrency if k.concurrency is not None else k.rate) if k else None,
                      "knee_key": k.key if k else None, "slo": " and ".join(b.text() for b in bounds),
                      "sentence": sentence + (f" ({serial})" if serial else ""), "serial": serial,
                      "levels": [v.as_dict() for v in verdicts]}
    return out


def _at(s: Sample, level: Level) -> bool:
    if level.concurrency is not None:
        return s.scenario.get("concurrency") == level.concurrency and "rate" not in s.scenario
    return s.scenario.get("rate") == level.rate


def _sentence(model: str, bounds: list[Bound], best_c: Level | None, best_r: Level | None,
              verdicts: list[LevelVerdict]) -> str:
    slo = " and ".join(b.text() for b in bounds)
    if best_c is None and best_r is None:
        first = verdicts[0]
        at = (f"{first.level.concurrency} concurrent user{'s' if first.level.concurrency != 1 else ''}"
              if first.level.concurrency is not None else f"{first.level.rate:g} requests/s")
        return f"{model} on this machine: {slo} does not hold even at {at} ({'; '.join(first.failed_bounds)})"
    parts = []
    if best_c is not None:
        parts.append(f"up to {best_c.concurrency} concurrent user{'s' if best_c.concurrency != 1 else ''}")
    if best_r is not None:
        parts.append(f"up to {best_r.rate:g} requests/s")
    return f"{model} on this machine: {slo} {' and '.join(parts)}"
