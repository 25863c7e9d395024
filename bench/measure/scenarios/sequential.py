"""The sequential matrix: one request at a time, round by round, every prompt in each round."""

from __future__ import annotations

from typing import Callable, Iterable

from bench.config import Plan
from bench.measure.scenarios.base import Cell, Scenario, Send, Stop


class Sequential(Scenario):
    name = "sequential"

    def cells(self, plan: Plan) -> list[Cell]:
        return [Cell(r, p) for r in range(plan.rounds) for p in plan.prompts]

    def drive(self, cells: Iterable[Cell], send: Send, stop: Stop, warm: Send | None = None,
              drop: Callable[[Cell], None] | None = None) -> None:
        todo = list(cells)
        consecutive = 0
        for n, cell in enumerate(todo):
            s = send(cell)
            consecutive = 0 if s.ok else consecutive + 1
            if not s.ok and stop(s, consecutive, len(todo) - n - 1):
                return
