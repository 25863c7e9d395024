"""Open loop: requests arrive at a rate, whether or not earlier ones have been answered.

At each level of ``rate`` requests/s, arrival times are drawn from a Poisson process (exponential
gaps, seeded), so queueing shows up as it does for real users. A request is sent at its arrival
time by a pool of at most ``max_in_flight`` threads (threads are reused, never one per request);
an arrival that finds ``max_in_flight`` requests already in flight is recorded as *dropped*, never
silently delayed. The first arrivals of a level (about a second's worth) are unmeasured warmup;
after the last measured arrival, arrivals go on, unmeasured, until every measured request is
answered, so the measured ones all ran under the level's load. Each sample carries its ``rate``
and ``lag_s``: how late bench sent it after its scheduled arrival (dispatch lag, shown, not hidden).
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.config import Plan
from bench.errors import ConfigError
from bench.measure.scenarios.base import Cell, Scenario, Send, Stop

MAX_RATE = 10_000.0
MAX_IN_FLIGHT = 1024


def _positive(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0


class Rate(Scenario):
    name = "rate"

    def __init__(self, rates: Iterable[float] = (1.0,), requests_per_level: int = 32, max_in_flight: int = 256,
                 seed: int = 0, duration_s: float | None = None):
        self.rates = [float(r) for r in rates]
        self.requests_per_level, self.max_in_flight, self.seed = int(requests_per_level), int(max_in_flight), int(seed)
        self.duration_s = duration_s

    def per_level(self, rate: float) -> int:
        """Measured requests at a level: the count given, or the rate times --duration."""
        return max(1, round(rate * self.duration_s)) if self.duration_s else self.requests_per_level

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> "Rate":
        """Checked before any request (the parameters may come from a flag or a run file)."""
        rates, n = params.get("rates", [1.0]), params.get("requests_per_level", 32)
        cap, seed = params.get("max_in_flight", 256), params.get("seed", 0)
        if not isinstance(rates, list) or not rates or not all(_positive(r) and r <= MAX_RATE for r in rates):
            raise ConfigError(f"--rate takes request rates above 0 and up to {MAX_RATE:g} per second, e.g. --rate 2,5,10")
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ConfigError(f"--requests-per-level (or --duration) must give at least 1 request per level; got {n!r}")
        if not isinstance(cap, int) or isinstance(cap, bool) or not 1 <= cap <= MAX_IN_FLIGHT:
            raise ConfigError(f"--max-in-flight must be from 1 to {MAX_IN_FLIGHT}; got {cap!r}")
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ConfigError(f"the load seed must be a whole number; got {seed!r}")
        duration = params.get("duration_s")
        if duration is not None and not (_positive(duration) and duration <= 86_400):
            raise ConfigError(f"--duration must be seconds above 0 (at most a day); got {duration!r}")
        return cls(rates, n, cap, seed, duration)

    def params(self) -> dict[str, Any]:
        return {"name": self.name, "rates": list(self.rates), "requests_per_level": self.requests_per_level,
                "max_in_flight": self.max_in_flight, "seed": self.seed,
                **({"duration_s": self.duration_s} if self.duration_s else {})}

    def cells(self, plan: Plan) -> list[Cell]:
        rng = random.Random(self.seed)
        cells, n = [], 0
        for rate in self.rates:
            for _ in range(self.per_level(rate)):
                cells.append(Cell(n, plan.prompts[rng.randrange(len(plan.prompts))], {"rate": rate}))
                n += 1
        return cells

    def drive(self, cells: Iterable[Cell], send: Send, stop: Stop, warm: Send | None = None,
              drop: Callable[[Cell], None] | None = None) -> None:
        todo = list(cells)
        for i, rate in enumerate(self.rates):
            mine = [c for c in todo if c.coords.get("rate") == rate]
            if mine and _OpenLevel(rate, mine, self.max_in_flight, random.Random(self.seed * 1000 + i),
                                   send, stop, warm, drop).run():
                return


class _OpenLevel:
    def __init__(self, rate: float, cells: list[Cell], cap: int, rng: random.Random, send: Send, stop: Stop,
                 warm: Send | None, drop: Callable[[Cell], None] | None):
        self.rate, self.cells, self.cap, self.rng = rate, cells, cap, rng
        self.send, self.stop, self.warm, self.drop = send, stop, warm, drop
        self.lock = threading.Lock()
        self.in_flight = 0
        self.unfinished = len(cells)
        self.consecutive = 0
        self.stopped = False

    def run(self) -> bool:
        warmup = max(1, math.ceil(self.rate)) if self.warm is not None else 0
        with ThreadPoolExecutor(max_workers=self.cap, thread_name_prefix="bench-arrival") as pool:
            due, k = time.perf_counter(), 0
            while not self.stopped:
                due += self.rng.expovariate(self.rate)
                time.sleep(max(0.0, due - time.perf_counter()))
                lag = max(0.0, time.perf_counter() - due)
                measured = warmup <= k < warmup + len(self.cells)
                with self.lock:
                    if k >= warmup + len(self.cells) and self.unfinished <= 0:
                        break
                    full = self.in_flight >= self.cap
                    if not full:
                        self.in_flight += 1
                cell = self._cell(k, warmup, lag, measured)
                k += 1
                if full:
                    if measured:
                        self._dropped(cell)
                    continue
                if not measured and self.warm is None:
                    with self.lock:
                        self.in_flight -= 1
                    continue
                pool.submit(self._one, cell, measured)
        return self.stopped

    def _cell(self, k: int, warmup: int, lag: float, measured: bool) -> Cell:
        base = self.cells[k - warmup] if measured else self.cells[k % len(self.cells)]
        coords = {**base.coords, "lag_s": round(lag, 6)}
        return Cell(base.round, base.prompt, coords if measured else {**coords, "unmeasured": True})

    def _dropped(self, cell: Cell) -> None:
        with self.lock:
            self.unfinished -= 1
        if self.drop is not None:
            self.drop(cell)

    def _one(self, cell: Cell, measured: bool) -> None:
        try:
            if not measured:
                self.warm(cell)  # type: ignore[misc]
                return
            s = self.send(cell)
            with self.lock:
                self.unfinished -= 1
                self.consecutive = 0 if s.ok else self.consecutive + 1
                if not s.ok:
                    self.stopped = self.stopped or self.stop(s, self.consecutive, self.unfinished)
        finally:
            with self.lock:
                self.in_flight -= 1
