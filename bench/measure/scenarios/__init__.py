"""Scenarios: how requests are scheduled (``base.Scenario``). The sequential matrix is the default."""

from __future__ import annotations

from typing import Any

from bench.errors import ConfigError
from bench.measure.scenarios.base import Cell, Scenario
from bench.measure.scenarios.concurrency import Concurrency
from bench.measure.scenarios.rate import Rate
from bench.measure.scenarios.sequential import Sequential

SCENARIOS: dict[str, type[Scenario]] = {Sequential.name: Sequential, Concurrency.name: Concurrency, Rate.name: Rate}


def register(scenario: type[Scenario]) -> type[Scenario]:
    SCENARIOS[scenario.name] = scenario
    return scenario


def get(name: str, params: dict[str, Any] | None = None) -> Scenario:
    """The scenario ``name`` with its parameters (the plan's ``load``)."""
    try:
        cls = SCENARIOS[name]
    except KeyError:
        raise ConfigError(f"unknown scenario '{name}'; known: {', '.join(SCENARIOS)}") from None
    return cls.from_params(dict(params or {}))


__all__ = ["SCENARIOS", "Cell", "Concurrency", "Rate", "Scenario", "Sequential", "get", "register"]
