"""Measure: the timed client, scenarios and the runner."""
