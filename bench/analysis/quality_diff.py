"""Did a model's answers get better or worse? Rubric pass/fail compared pair by pair (McNemar).

A response passes its prompt's rubric when every check passes. Responses of A and B are paired
by (session, prompt, round): the same question asked the same way, so the test is McNemar's
exact test on the discordant pairs (passed in A only, passed in B only). A change counts when it
is clear after Holm's correction across models and at least ``MIN_POINTS`` of pass rate.
"""

from __future__ import annotations

import math
from typing import Any

from bench.analysis import noise

METRIC = "rubric_pass"
LABEL = "rubric pass rate"
MIN_POINTS = 0.10  # practical threshold: 10 percentage points of pass rate


def _passes(samples: list[Any]) -> dict[tuple[int, str, int], bool]:
    return {(int(getattr(s, "session", 0) or 0), s.prompt_id, s.round): s.rubric.passed == s.rubric.total
            for s in samples if s.ok and not s.warmup and s.rubric is not None and s.rubric.total > 0}


def mcnemar(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p: the discordant pairs split as a fair coin would?"""
    n = only_a + only_b
    if n == 0:
        return 1.0
    k = min(only_a, only_b)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def rows(models: list[str], side_a: Any, side_b: Any, make_row: Any) -> list[Any]:
    """One row per model that has paired rubric results on both sides, statuses decided."""
    out, discordant = [], []
    for model in models:
        pa, pb = _passes(side_a.samples(model)), _passes(side_b.samples(model))
        pairs = sorted(set(pa) & set(pb))
        if not pairs:
            continue
        only_a = sum(pa[k] and not pb[k] for k in pairs)
        only_b = sum(pb[k] and not pa[k] for k in pairs)
        rate_a, rate_b = sum(pa[k] for k in pairs) / len(pairs), sum(pb[k] for k in pairs) / len(pairs)
        out.append(make_row(model, METRIC, None, "", a=rate_a, b=rate_b, change=rate_b - rate_a, n_a=len(pairs),
                            n_b=len(pairs), p=mcnemar(only_a, only_b), threshold=MIN_POINTS,
                            basis=f"McNemar, {len(pairs)} paired answers ({only_a} passed only in A, "
                                  f"{only_b} only in B)"))
        discordant.append(only_a + only_b)
    clear = noise.holm([r.p for r in out])
    for r, c, n in zip(out, clear, discordant):
        if c and abs(r.change) >= MIN_POINTS:
            r.status = "improved" if r.change > 0 else "worsened"
        else:  # "same": every pair agrees, or the change is clear but small
            r.status = "same" if c or n == 0 else "not significant"
    return out
