"""Closed loop: at each level, C streams in flight, each sending its next request when one ends.

Per level, every stream first sends one unmeasured request (the ramp-up: the streams start
together, so the first answers queue behind each other), then the streams share the level's
measured requests; while measured requests are still in flight, a stream that finds none left
sends unmeasured ones (the cool-down), so every measured request ran with C streams in flight.
Unmeasured requests are kept as warmup samples (outside every statistic). Prompts are drawn from
the prompt set in a fixed order seeded by ``seed``. One thread per stream, started per level:
no thread per request.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterable
from typing import Any

from bench.config import Plan
from bench.errors import ConfigError
from bench.measure.scenarios.base import Cell, Scenario, Send, Stop

MAX_LEVEL = 1024


def _whole(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _open_files_limit() -> int | None:
    try:
        import resource
    except ImportError:  # not on this OS
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft > 0 else None


class Concurrency(Scenario):
    name = "concurrency"

    def __init__(self, levels: Iterable[int] = (1,), requests_per_level: int = 32, seed: int = 0):
        self.levels = [int(x) for x in levels]
        self.requests_per_level = int(requests_per_level)
        self.seed = int(seed)

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> "Concurrency":
        """Checked before any request (the parameters may come from a flag or a run file)."""
        levels, n, seed = params.get("levels", [1]), params.get("requests_per_level", 32), params.get("seed", 0)
        if not isinstance(levels, list) or not levels or not all(_whole(x) for x in levels):
            raise ConfigError("--concurrency takes whole numbers of streams, e.g. --concurrency 1,4,16")
        if any(not 1 <= x <= MAX_LEVEL for x in levels):
            raise ConfigError(f"--concurrency levels must be from 1 to {MAX_LEVEL}; got {levels}")
        if not _whole(n) or n < 1:
            raise ConfigError(f"--requests-per-level must be a whole number of at least 1; got {n!r}")
        if not _whole(seed):
            raise ConfigError(f"the load seed must be a whole number; got {seed!r}")
        limit = _open_files_limit()
        if limit is not None and 2 * max(levels) + 64 > limit:
            raise ConfigError(f"concurrency {max(levels)} needs about {2 * max(levels) + 64} open files; this process "
                              f"may open {limit}: raise it (ulimit -n) or use fewer streams")
        return cls(levels, n, seed)

    def params(self) -> dict[str, Any]:
        return {"name": self.name, "levels": list(self.levels), "requests_per_level": self.requests_per_level,
                "seed": self.seed}

    def cells(self, plan: Plan) -> list[Cell]:
        rng = random.Random(self.seed)
        cells, n = [], 0
        for level in self.levels:
            for _ in range(self.requests_per_level):
                cells.append(Cell(n, plan.prompts[rng.randrange(len(plan.prompts))], {"concurrency": level}))
                n += 1
        return cells

    def drive(self, cells: Iterable[Cell], send: Send, stop: Stop, warm: Send | None = None,
              drop: Callable[[Cell], None] | None = None) -> None:
        todo = list(cells)
        for level in self.levels:
            mine = [c for c in todo if c.coords.get("concurrency") == level]
            if mine and _Level(level, mine, send, stop, warm).run():
                return


class _Level:
    """One level: ``level`` stream threads sharing ``cells``; True when a stop was called for."""

    def __init__(self, level: int, cells: list[Cell], send: Send, stop: Stop, warm: Send | None):
        self.level, self.cells, self.send, self.stop, self.warm = level, cells, send, stop, warm
        self.lock = threading.Lock()
        self.next = 0  # index of the next measured cell
        self.unfinished = len(cells)  # measured cells not answered yet
        self.consecutive = 0
        self.stopped = False

    def run(self) -> bool:
        streams = [threading.Thread(target=self._stream, args=(i,), name=f"bench-stream-{i}", daemon=True)
                   for i in range(self.level)]
        for t in streams:
            t.start()
        for t in streams:
            t.join()
        return self.stopped

    def _take(self) -> Cell | None:
        with self.lock:
            if self.stopped or self.next >= len(self.cells):
                return None
            self.next += 1
            return self.cells[self.next - 1]

    def _stream(self, i: int) -> None:
        if self.warm is not None:  # ramp-up: unmeasured
            self.warm(self._filler(i))
        while True:
            cell = self._take()
            if cell is None:
                with self.lock:
                    busy = self.unfinished > 0 and not self.stopped
                if not busy:
                    return
                if self.warm is None:
                    return
                self.warm(self._filler(i))  # cool-down: keep the level's streams in flight
                continue
            s = self.send(cell)
            with self.lock:
                self.unfinished -= 1
                self.consecutive = 0 if s.ok else self.consecutive + 1
                consecutive, remaining = self.consecutive, len(self.cells) - self.next
            if not s.ok:
                with self.lock:  # one stop decision at a time (it records why the model stopped)
                    self.stopped = self.stopped or self.stop(s, consecutive, remaining)
                    if self.stopped:
                        return

    def _filler(self, i: int) -> Cell:
        """An unmeasured request's cell: a prompt of the level, its coordinates marked."""
        cell = self.cells[i % len(self.cells)]
        return Cell(cell.round, cell.prompt, {**cell.coords, "unmeasured": True})
