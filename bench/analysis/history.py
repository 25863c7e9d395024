"""Level shifts in a model's history: "since commit abc1234, TTFT +12%".

For a model, its comparable runs (the workload, prompt-cache mode, machine and runtime settings
of its latest run) form a series per metric: each run's log statistic, the geometric mean over
the prompts every run has of the per-prompt median (the statistic ``bench diff`` shows).

Change points are found by binary segmentation (as in asv's step detection and E-Divisive, in
their simplest form): the split that best separates the series into two levels is kept when the
two levels differ by at least the metric's practical threshold and clearly (a two-sample test on
the logs with the pooled spread around each level, at 1% after Bonferroni over the candidate
splits); each side is then searched again. Each level needs two runs, so a new level is named
once a second run confirms it; one odd run is never a change point.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bench.analysis import digest, noise
from bench.results.metrics import Metric, compared
from bench.results.schema import Run

ALPHA = 0.01
MIN_LEVEL = 2  # runs on each side of a change point
FLOOR_SD = 0.005  # the spread assumed at least (identical runs would make any step "clear")


@dataclass(frozen=True)
class Step:
    model: str
    metric: str
    run_id: str  # the first run of the new level
    commit: str | None  # its project commit, when recorded
    started_at: str
    change: float  # relative: new level / old level - 1
    before: float  # the two levels (the metric's unit)
    after: float

    @property
    def since(self) -> str:
        return f"commit {self.commit[:7]}" if self.commit else f"run {self.run_id}"


def change_points(x: list[float], min_change: float, alpha: float = ALPHA) -> list[tuple[int, float]]:
    """(index where the new level starts, change in log) of each step in ``x`` (logs), in order.

    Each segment is split either once (a step) or twice (a level that came and went: a single
    split cannot see it, as circular binary segmentation notes), whichever fits better."""
    found: list[tuple[int, float]] = []

    def search(lo: int, hi: int) -> None:
        seg = np.asarray(x[lo:hi], dtype=float)
        best = _best_split(seg)
        if best is None:
            return
        ss, cuts, delta, n_in, candidates = best
        # The spread from successive differences inside the levels (von Neumann), not from the
        # residuals around the levels, which the search has made as small as it could.
        within = np.delete(np.diff(seg), [c - 1 for c in cuts])  # successive differences inside the levels
        sd = max(FLOOR_SD, math.sqrt(float(np.mean(within**2)) / 2))
        var = sd**2 * (1 / n_in + 1 / (len(seg) - n_in))
        p = noise.t_p_value(delta, var, len(within))
        if abs(math.expm1(delta)) < min_change or p >= alpha / candidates:
            return
        bounds = [lo, *(lo + c for c in cuts), hi]
        for a, b in zip(bounds, bounds[1:]):
            search(a, b)
        levels = [float(np.mean(x[a:b])) for a, b in zip(bounds, bounds[1:])]
        found.extend((b, after - before) for b, before, after in zip(bounds[1:-1], levels, levels[1:]))

    search(0, len(x))
    return sorted(found)


def _best_split(seg: np.ndarray) -> tuple[float, tuple[int, ...], float, int, int] | None:
    """(residual sum of squares, cut points, change of the middle/second level, its size, candidates
    tried) of the best one- or two-cut split with every level at least MIN_LEVEL runs long."""
    n = len(seg)
    if n < 2 * MIN_LEVEL:
        return None
    s = np.concatenate([[0.0], np.cumsum(seg)])
    q = np.concatenate([[0.0], np.cumsum(seg**2)])

    def rss(total: np.ndarray, squares: np.ndarray, count: np.ndarray) -> np.ndarray:
        return squares - total**2 / count

    k = np.arange(MIN_LEVEL, n - MIN_LEVEL + 1)
    one = rss(s[k], q[k], k) + rss(s[n] - s[k], q[n] - q[k], n - k)
    best_one = int(np.argmin(one))
    kk = int(k[best_one])
    result = (float(one[best_one]), (kk,), float((s[n] - s[kk]) / (n - kk) - s[kk] / kk), n - kk, len(k))
    if n >= 3 * MIN_LEVEL:
        i, j = np.triu_indices(n + 1, k=MIN_LEVEL)
        keep = (i >= MIN_LEVEL) & (n - j >= MIN_LEVEL)
        i, j = i[keep], j[keep]
        inside, out = j - i, n - (j - i)
        two = rss(s[j] - s[i], q[j] - q[i], inside) + rss(s[n] - s[j] + s[i], q[n] - q[j] + q[i], out)
        b = int(np.argmin(two))
        if two[b] < result[0]:
            bi, bj = int(i[b]), int(j[b])
            delta = (s[bj] - s[bi]) / (bj - bi) - (s[n] - s[bj] + s[bi]) / (n - bj + bi)
            result = (float(two[b]), (bi, bj), float(delta), bj - bi, len(k) + len(i))
    return result


def _stat_series(runs: list[Run], model: str, metric: Metric) -> list[tuple[Run, float]]:
    per = [(r, digest.prompt_medians(r, model, metric)) for r in runs]
    per = [(r, medians) for r, medians in per if medians]
    if not per:
        return []
    prompts = sorted(set.intersection(*(set(medians) for _, medians in per)))
    return [(r, digest.log_stat(medians, prompts)) for r, medians in per] if prompts else []


def comparable_history(runs: list[Run], model: str) -> list[Run]:
    """The runs of ``model`` comparable with its latest one, oldest first."""
    from bench.analysis.compare import _comparable

    mine = sorted((r for r in runs if model in r.models), key=lambda r: r.run_id)
    if not mine:
        return []
    latest = mine[-1]
    return [r for r in mine if r is latest or _comparable(r, latest, False, model) is None]


def model_steps(runs: list[Run], model: str) -> list[Step]:
    """Every level shift of every compared metric in the model's comparable history."""
    history = comparable_history(runs, model)
    steps = []
    for m in compared():
        series = _stat_series(history, model, m)
        values = [v for _, v in series]
        for k, delta in change_points(values, m.min_change):
            run = series[k][0]
            before = math.exp(float(np.mean(values[max(0, k - 5):k])))
            after = math.exp(float(np.mean(values[k:k + 5])))
            steps.append(Step(model, m.id, run.run_id, run.git.commit if run.git else None, run.started_at,
                              math.expm1(delta), before, after))
    return sorted(steps, key=lambda s: (s.run_id, s.metric))
