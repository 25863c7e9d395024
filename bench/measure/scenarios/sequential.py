"""The sequential matrix: one request at a time, round by round, every prompt in each round.

Within a round the prompts go in a shuffled order, a different one each round and session, so
that slow drift of the machine (warming up, throttling, other load) spreads over every prompt
instead of looking like a difference between prompts. The order of round r in session s is a
permutation computed from (seed, session, round) alone, reproducible from the seed the run records.
With ``--sessions N`` the matrix is repeated N times (the runner restarts embedded servers between
sessions); models stay in blocks (a runtime that swaps models would put load time into TTFT).
"""

from __future__ import annotations

import hashlib
import random
from typing import Callable, Iterable

from bench.config import Plan
from bench.measure.scenarios.base import Cell, Scenario, Send, Stop


class Sequential(Scenario):
    name = "sequential"

    def cells(self, plan: Plan) -> list[Cell]:
        seed = plan.generation.seed if plan.generation.seed is not None else 0
        return [Cell(r, plan.prompts[i], session=s) for s in range(plan.sessions) for r in range(plan.rounds)
                for i in round_order(len(plan.prompts), seed, s, r)]

    def drive(self, cells: Iterable[Cell], send: Send, stop: Stop, warm: Send | None = None,
              drop: Callable[[Cell], None] | None = None) -> None:
        todo = list(cells)
        consecutive = 0
        for n, cell in enumerate(todo):
            s = send(cell)
            consecutive = 0 if s.ok else consecutive + 1
            if not s.ok and stop(s, consecutive, len(todo) - n - 1):
                return


def round_order(n: int, seed: int, session: int, round_: int) -> list[int]:
    """The prompt order of one round: a permutation of range(n) from (seed, session, round) alone."""
    digest = hashlib.sha256(f"bench-order:{seed}:{session}:{round_}".encode()).digest()
    order = list(range(n))
    random.Random(int.from_bytes(digest[:8], "big")).shuffle(order)
    return order
