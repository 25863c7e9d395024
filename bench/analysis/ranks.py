"""How a profile's ranking changed between two runs: who overtook whom, a new top pick, a model
that stopped (or started) meeting the profile's hard constraints. Pure data; pages word it.

Only models ranked in both runs are compared, so a model added or dropped is never "overtaken".
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.analysis.scoring import Ranking


@dataclass(frozen=True)
class RankChange:
    profile: str
    top: tuple[str | None, str | None] | None = None  # (old top pick, new top pick) when it changed
    overtook: dict[str, list[str]] = field(default_factory=dict)  # model -> the models it moved ahead of
    excluded: dict[str, list[str]] = field(default_factory=dict)  # model -> the constraints it now fails
    eligible: list[str] = field(default_factory=list)  # models that meet the constraints again

    def __bool__(self) -> bool:
        return bool(self.top or self.overtook or self.excluded or self.eligible)


def _ranks(r: Ranking) -> dict[str, int]:
    return {row.model: row.rank for row in r.rows if row.rank is not None}


def rank_change(before: Ranking, after: Ranking) -> RankChange:
    """What changed in one profile's ranking from ``before`` to ``after`` (empty when nothing did)."""
    a, b = _ranks(before), _ranks(after)
    both = [m for m in b if m in a]
    overtook: dict[str, list[str]] = {}
    for m in sorted(both, key=b.__getitem__):
        passed = sorted((o for o in both if a[o] < a[m] and b[o] > b[m]), key=a.__getitem__)
        if passed:
            overtook[m] = passed
    was_excluded = {row.model for row in before.rows if row.excluded}
    excluded = {row.model: list(row.excluded) for row in after.rows if row.excluded and row.model in a}
    eligible = [m for m in b if m in was_excluded]
    old_top, new_top = (before.top.model if before.top else None), (after.top.model if after.top else None)
    present = {row.model for row in before.rows} & {row.model for row in after.rows}
    top = (old_top, new_top) if old_top != new_top and {old_top, new_top} - {None} <= present else None
    return RankChange(after.profile, top, overtook, excluded, eligible)
