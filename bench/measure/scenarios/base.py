"""The scenario protocol: which requests a model gets, and when.

A scenario turns the plan into cells (one measured request each, with the coordinates the
sample will carry) and drives them: it calls ``send`` for each cell when it is due, and stops a
model when ``stop`` says so (an unknown model, a dead server, too many failures in a row). The
runner does everything else (warmup, prompt-cache rule, journal, progress). A load mode is one
scenario: one module of this package, registered in ``bench.measure.scenarios.SCENARIOS``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterable

from bench.config import Plan, Prompt
from bench.results.schema import Sample


@dataclass(frozen=True)
class Cell:
    """One measured request: its round, its prompt and the scenario's coordinates."""

    round: int
    prompt: Prompt
    coords: dict[str, Any] = field(default_factory=dict)
    session: int = 0  # the repeat of the whole matrix it belongs to (--sessions)

    @property
    def key(self) -> tuple[str, int, int]:
        return self.prompt.id, self.round, self.session


# send(cell) -> the sample it produced; stop(sample, consecutive_failures, remaining) -> stop the model?
Send = Callable[[Cell], Sample]
Stop = Callable[[Sample, int, int], bool]


class Scenario:
    name: ClassVar[str] = ""

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> "Scenario":
        """The scenario with the parameters the plan gives (``Plan.load``)."""
        return cls()

    def params(self) -> dict[str, Any]:
        """What the workload records (and hashes) about this scenario."""
        return {"name": self.name}

    def cells(self, plan: Plan) -> list[Cell]:
        """Every measured request of one model, in the order the scenario sends them."""
        raise NotImplementedError

    def drive(self, cells: Iterable[Cell], send: Send, stop: Stop, warm: Send | None = None,
              drop: Callable[[Cell], None] | None = None) -> None:
        """Send the cells when they are due; return when done or when ``stop`` says so. ``warm``
        sends an unmeasured request (a warmup sample), for scenarios that keep load between cells;
        ``drop`` records a cell that was not sent (an open-loop arrival over the in-flight cap).
        ``send``, ``warm`` and ``drop`` may be called from several threads at once."""
        raise NotImplementedError
