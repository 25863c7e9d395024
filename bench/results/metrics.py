"""The metric registry: every per-request metric bench reports, defined once.

A metric says how one successful request's value is computed from its stored sample, in which
unit, which direction is better, how it is formatted, which statistics the summary tables show,
and which selection-framework dimension it feeds. Statistics (``bench.results.stats``), the
``bench show`` table, exports, run pages, diffs and trends read it. Adding a metric is one
``register(Metric(...))`` call (plus a template line only where a page wants a special view).

"ITL" means one thing everywhere: a request's mean gap between content chunks after the first
(TTFT excluded); its percentiles are over requests, as for every other metric here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

from bench.results.schema import Sample

# How a value is shown (bench.report.format knows each): seconds as milliseconds, seconds,
# a rate (tokens/s), a count.
Kind = Literal["ms", "s", "rate", "count"]
STATS = ("mean", "p50", "p95", "p99", "min", "max")


@dataclass(frozen=True)
class Metric:
    id: str
    label: str  # how pages and tables name it
    unit: str  # of the stored value: "s", "tokens/s", "tokens", ...
    value: Callable[[Sample], float | None]  # one successful request's value (None: not defined for it)
    better: Literal["lower", "higher"] | None  # None: neither (a description, not a goal)
    kind: Kind = "count"
    table: tuple[str, ...] = ("p50",)  # statistics the narrow tables show (bench show, Markdown export)
    export: tuple[str, ...] = ("p50",)  # statistics the CSV export has a column for
    dimension: str | None = None  # the selection-framework dimension it feeds, if any
    description: str = ""
    compared: bool = True  # diffed between runs and drawn in trends
    short: str = ""  # for narrow table headings (default: the label)

    @property
    def higher_is_better(self) -> bool:
        return self.better == "higher"

    def column(self, stat: str) -> str:
        """Its export column for one statistic: ``ttft_p50_s`` (seconds carry ``_s``)."""
        return f"{self.id}_{stat}" + ("_s" if self.unit == "s" else "")


METRICS: dict[str, Metric] = {}


def register(metric: Metric) -> Metric:
    """Add (or replace) a metric; everything that reports metrics shows it from then on."""
    if not metric.id.isidentifier():
        raise ValueError(f"metric id '{metric.id}' must be an identifier (letters, digits, _)")
    METRICS[metric.id] = metric
    return metric


def unregister(metric_id: str) -> None:
    METRICS.pop(metric_id, None)


def compared() -> list[Metric]:
    return [m for m in METRICS.values() if m.compared and m.better is not None]


# ----------------------------------------------------------------------------- the built-in metrics


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


def itl(s: Sample) -> float | None:
    """A request's mean gap between content chunks after the first (TTFT excluded)."""
    return sum(s.itl_s) / len(s.itl_s) if s.itl_s else None


register(Metric("ttft", "TTFT", "s", lambda s: s.ttft_s, "lower", "ms", ("p50", "p95"), ("p50", "p95"),
                "latency", "request sent -> first chunk carrying content"))
register(Metric("itl", "inter-token latency", "s", itl, "lower", "ms", ("p50",), ("p50",), None,
                "a request's mean gap between content chunks after the first", short="ITL"))
register(Metric("tpot", "TPOT", "s", tpot, "lower", "ms", (), ("p50",), None,
                "(e2e - TTFT) / (completion tokens - 1)", compared=False))
register(Metric("e2e", "end-to-end", "s", lambda s: s.e2e_s, "lower", "s", ("mean", "p95"), ("mean", "p50", "p95", "p99"),
                "latency", "request sent -> end of the response", short="e2e"))
register(Metric("decode_tps", "decode tokens/s", "tokens/s", decode_tps, "higher", "rate", ("p50",), ("p50", "mean"),
                "throughput", "(completion tokens - 1) / (e2e - TTFT)", short="decode tok/s"))
register(Metric("e2e_tps", "e2e tokens/s", "tokens/s", e2e_tps, "higher", "rate", (), (), None,
                "completion tokens / e2e", compared=False))
register(Metric("completion_tokens", "completion tokens", "tokens",
                lambda s: float(s.completion_tokens) if s.completion_tokens is not None else None, None, "count",
                (), ("mean",), None, "tokens generated"))
