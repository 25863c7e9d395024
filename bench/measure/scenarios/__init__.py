"""Scenarios: how requests are scheduled (``base.Scenario``). The sequential matrix is the default."""

from __future__ import annotations

from bench.errors import ConfigError
from bench.measure.scenarios.base import Cell, Scenario
from bench.measure.scenarios.sequential import Sequential

SCENARIOS: dict[str, type[Scenario]] = {Sequential.name: Sequential}


def register(scenario: type[Scenario]) -> type[Scenario]:
    SCENARIOS[scenario.name] = scenario
    return scenario


def get(name: str) -> Scenario:
    try:
        return SCENARIOS[name]()
    except KeyError:
        raise ConfigError(f"unknown scenario '{name}'; known: {', '.join(SCENARIOS)}") from None


__all__ = ["Cell", "SCENARIOS", "Scenario", "Sequential", "get", "register"]
