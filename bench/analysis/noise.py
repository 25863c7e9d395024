"""How sure is a change between two runs? A model of run-to-run noise, a test, Holm's correction.

The statistic of one run, per model and metric, is the geometric mean over prompts of the
per-prompt median (prompts with long and short answers weigh the same). Its logarithm varies
between runs of the same machine by more than its requests suggest (server warm state, thermal
state, other load): one run cannot see that run-level noise, so it is taken from what exists
(asv's and pyperf's ways), pooled by degrees of freedom:

* a prior, ``PRIOR_RUN_NOISE`` (5%, configurable) worth ``PRIOR_DF`` degrees of freedom, plus the
  run's own request-level (bootstrap) variance;
* earlier comparable runs of the same machine (``history``): the spread of their statistics;
* repeated sessions within the runs (``bench collect --sessions N``): the spread between sessions.

With that variance V of one session's statistic, the change d = log B - log A has variance
V (1/n_A + 1/n_B) (n: sessions per run) and is tested with a normal approximation. A change
is reported only when it is clear after Holm's correction across the models of the table AND at
least the metric's practical threshold. The metrics of one model share its run factor (a slow
run is slow in every metric), so they form one family: they are not corrected against each
other, only models are (exact when the run factor dominates, slightly liberal otherwise).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

PRIOR_RUN_NOISE = 0.05  # sd of log(run statistic) between runs of one machine, before any is measured
PRIOR_DF = 2.0  # how much the prior weighs, in degrees of freedom
ALPHA = 0.05  # family-wise error rate of a diff table
MIN_SAMPLES = 3  # successful requests per prompt and side needed for request-level variance
POWER = 0.8


def log_stat(by_prompt: dict[str, np.ndarray], prompts: list[str]) -> float:
    """log of the geometric mean over ``prompts`` of the per-prompt medians."""
    return float(np.mean([np.log(np.median(by_prompt[p])) for p in prompts]))


def within_var(by_prompt: dict[str, np.ndarray], prompts: list[str], n_boot: int = 1000, seed: int = 0) -> float:
    """Request-level variance of ``log_stat`` (requests resampled within each prompt, seeded);
    infinite when a prompt has too few requests to tell."""
    if min(len(by_prompt[p]) for p in prompts) < MIN_SAMPLES:
        return math.inf
    rng = np.random.default_rng(seed)
    boot = np.zeros(n_boot)
    for p in prompts:
        values = by_prompt[p]
        boot += np.log(np.median(values[rng.integers(0, len(values), size=(n_boot, len(values)))], axis=1))
    return float(np.var(boot / len(prompts), ddof=1))


@dataclass(frozen=True)
class Noise:
    """The variance of one session's log statistic, and where it came from."""

    var: float
    df_data: float  # degrees of freedom measured (history, sessions); 0: the prior alone
    basis: str  # "prior", "3 earlier runs", "4 sessions", "3 earlier runs + 4 sessions", ...

    @property
    def sd(self) -> float:
        return math.sqrt(self.var)

    @property
    def prior_decides(self) -> bool:
        return self.df_data < 2


def pooled(within: float, history: list[float], sessions: list[list[float]],
           prior: float = PRIOR_RUN_NOISE) -> Noise:
    """Pool the prior (plus ``within``, the request-level variance), the log statistics of
    earlier comparable runs, and the per-session log statistics of the compared runs."""
    parts = [(PRIOR_DF, prior**2 + (within if math.isfinite(within) else 0.0))]
    basis = []
    if len(history) >= 2:
        parts.append((len(history) - 1.0, float(np.var(history, ddof=1))))
        basis.append(f"{len(history)} earlier run{'s' if len(history) != 1 else ''}")
    groups = [g for g in sessions if len(g) >= 2]
    if groups:
        df = sum(len(g) - 1.0 for g in groups)
        parts.append((df, sum(float(np.var(g, ddof=1)) * (len(g) - 1) for g in groups) / df))
        basis.append(f"{sum(len(g) for g in groups)} sessions")
    total_df = sum(df for df, _ in parts)
    var = sum(df * v for df, v in parts) / total_df
    return Noise(var, total_df - PRIOR_DF, " + ".join(basis) or f"the prior ({prior * 100:g}% between runs) + requests")


def p_value(d: float, var_d: float) -> float:
    """Two-sided p of a normal test of d = 0."""
    if var_d <= 0 or not math.isfinite(var_d):
        return 1.0 if not d or not math.isfinite(var_d) else 0.0
    return math.erfc(abs(d) / math.sqrt(2 * var_d))


def t_p_value(d: float, var_d: float, df: float) -> float:
    """Two-sided p of a Student t test of d = 0 with ``df`` degrees of freedom (the variance estimated)."""
    if var_d <= 0 or not math.isfinite(var_d) or df <= 0:
        return p_value(d, var_d)
    t = abs(d) / math.sqrt(var_d)
    return _betai(df / 2, 0.5, df / (df + t * t))


def _betai(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b) (continued fraction, Numerical Recipes)."""
    if x <= 0 or x >= 1:
        return 0.0 if x <= 0 else 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x > (a + 1) / (a + b + 2):
        return 1.0 - _betai(b, a, 1 - x)
    c, d, f = 1.0, 1.0 - (a + b) * x / (a + 1), 0.0
    d = 1 / (d if abs(d) > 1e-300 else 1e-300)
    f = d
    for m in range(1, 300):
        for num in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                    -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1 + num * d
            d = 1 / (d if abs(d) > 1e-300 else 1e-300)
            c = 1 + num / c if abs(1 + num / c) > 1e-300 else 1e-300
            f *= c * d
        if abs(c * d - 1) < 1e-12:
            break
    return front * f / a


def interval(d: float, var_d: float, level: float = 0.95) -> tuple[float, float]:
    """The relative change's interval (exp of the log interval, minus one)."""
    if not math.isfinite(var_d):
        return -math.inf, math.inf
    z = _z(1 - (1 - level) / 2)
    half = z * math.sqrt(max(var_d, 0.0))
    return math.expm1(d - half), math.expm1(d + half)


def holm(pvalues: list[float], alpha: float = ALPHA) -> list[bool]:
    """Holm's step-down: which hypotheses are rejected with family-wise error at most alpha."""
    order = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
    rejected = [False] * len(pvalues)
    for rank, i in enumerate(order):
        if pvalues[i] > alpha / (len(pvalues) - rank):
            break
        rejected[i] = True
    return rejected


def holm_level(rank_count: int, alpha: float = ALPHA) -> float:
    """The strictest per-family level Holm applies among ``rank_count`` families (alpha / m)."""
    return alpha / max(1, rank_count)


def sessions_needed(noise: Noise, change: float, families: int = 1, alpha: float = ALPHA,
                    power: float = POWER) -> int | None:
    """Sessions per run (A and B alike) to detect a relative ``change`` at this noise, with
    ``families`` models in the table; None when the noise is unknown."""
    target = _target(change, families, alpha, power)
    if target is None or not math.isfinite(noise.var):
        return None
    return max(1, math.ceil(noise.var / target))


def rounds_needed(noise: Noise, within: float, rounds: int, change: float, families: int = 1,
                  alpha: float = ALPHA, power: float = POWER) -> int | None:
    """Rounds per run (one session) to detect ``change``, when more requests per prompt can do it:
    the request-level part ``within`` (measured at ``rounds``) shrinks with rounds, the rest does not.
    None when no number of rounds is enough (the run-to-run part alone is too large)."""
    target = _target(change, families, alpha, power)
    if target is None or not (math.isfinite(noise.var) and math.isfinite(within)) or within <= 0:
        return None
    room = target - max(0.0, noise.var - within)
    return max(1, math.ceil(rounds * within / room)) if room > 0 else None


def _target(change: float, families: int, alpha: float, power: float) -> float | None:
    """The largest variance of one session's log statistic at which ``change`` is detected."""
    if change <= 0:
        return None
    z = _z(1 - holm_level(families, alpha) / 2) + _z(power)
    return (math.log1p(change) / z) ** 2 / 2


def _z(q: float) -> float:
    """The standard normal quantile (Acklam's rational approximation, |error| < 1.2e-9)."""
    a = (-3.969683028665376e01, 2.209460984245205e02, -2.759285104469687e02, 1.383577518672690e02,
         -3.066479806614716e01, 2.506628277459239e00)
    b = (-5.447609879822406e01, 1.615858368580409e02, -1.556989798598866e02, 6.680131188771972e01,
         -1.328068155288572e01)
    c = (-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e00, -2.549732539343734e00,
         4.374664141464968e00, 2.938163982698783e00)
    d = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00, 3.754408661907416e00)
    if q < 0.02425:
        t = math.sqrt(-2 * math.log(q))
        return (((((c[0] * t + c[1]) * t + c[2]) * t + c[3]) * t + c[4]) * t + c[5]) / \
            ((((d[0] * t + d[1]) * t + d[2]) * t + d[3]) * t + 1)
    if q > 1 - 0.02425:
        return -_z(1 - q)
    t = q - 0.5
    r = t * t
    return (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * t / \
        (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1)
