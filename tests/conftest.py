"""Fixtures: a scripted OpenAI-compatible server and paths pointed at a temp dir."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from bench import config
from bench.cli import main
from bench.measure import runner
from tests.fake_server import FakeServer, Script


@pytest.fixture
def server():
    with FakeServer(tokenize=False) as srv:
        yield srv


@pytest.fixture(params=["wire", "httpx"])
def both_clients(request, monkeypatch):
    """Run a test on bench's own HTTP client (plain http) and on httpx (https, proxies)."""
    if request.param == "httpx":
        monkeypatch.setenv("BENCH_HTTP_CLIENT", "httpx")
    return request.param


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Every test runs in its own empty directory with no bench-related environment."""
    for name in ("BENCH_MODELS", "FOUNDRY_LOCAL_ENDPOINT", "OPENAI_BASE_URL", "OPENAI_API_KEY",
                 "BENCH_STREAM", "BENCH_RESULTS_DIR", "BENCH_CONFIG", "BENCH_HTTP_CLIENT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def collect(server: FakeServer, models: str, *, env=None, backoff_s: float = 0.0, **kw):
    """Run the matrix in-process against the fake server; returns the Outcome."""
    kw.setdefault("results_dir", Path("results"))
    kw.setdefault("endpoint", server.url)
    plan = config.resolve(None, env=env or {}, models=models, **kw)
    plan, writer = runner.prepare(plan)
    return runner.collect(plan, writer, env=env or {}, sleep=lambda s: None, backoff_s=backoff_s)


def cli(*args: str, env: dict | None = None):
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    return result


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


__all__ = ["Script", "collect", "cli", "read_json"]
