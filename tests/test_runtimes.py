"""The runtime protocol: a runtime registered through it alone is detected, asked and recorded."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bench import runtimes
from bench.errors import BenchError
from bench.results import store
from bench.runtimes.base import MemoryReading, Runtime
from tests.conftest import collect
from tests.fake_server import Script


class Toy(Runtime):
    """A made-up server with its own routes: /toy/version, /toy/load; aliases; facts; memory."""

    name = "toy"
    label = "Toy server"
    ALIASES = {"small": "toy-small-q4:1"}

    @classmethod
    def detect(cls, conn) -> bool:
        return conn.get("/toy/version", root=True).data.get("toy") is True

    def version(self) -> str | None:
        return str(self.conn.get("/toy/version", root=True).data["version"])

    def served_id(self, name: str, listed: list[str]) -> str | None:
        served = self.ALIASES.get(name, name)
        return served if served in listed else None

    def ensure_loaded(self, model_id: str) -> float | None:
        t0 = time.perf_counter()
        answer = self.conn.post("/toy/load", {"model": model_id}, root=True, ok_only=False)
        if answer.status != 200:
            raise BenchError(str(answer.data.get("error")))
        return time.perf_counter() - t0

    def count_tokens(self, model_id: str, text: str) -> int | None:
        return len(text.split())

    def model_facts(self, model_id: str) -> dict:
        return {"license": "MIT", "disk_bytes": 4096, "quantization": "Q4"}

    def watch_memory(self):
        import contextlib

        @contextlib.contextmanager
        def watch():
            reading = MemoryReading(before_bytes=1000, source="toy's own report")
            yield reading
            reading.peak_bytes = 2000

        return watch()


@pytest.fixture
def toy():
    runtimes.register(Toy)
    yield Toy
    runtimes.unregister(Toy.name)


def _toy_routes(server, loaded: list[str]):
    server.routes[("GET", "/toy/version")] = (200, {"toy": True, "version": "1.2.3"})

    def load(body):
        if body.get("model") == "toy-broken":
            return 500, {"error": "out of memory"}
        loaded.append(body["model"])
        return 200, {"status": "loaded"}

    server.routes[("POST", "/toy/load")] = load


def test_a_runtime_registered_through_the_protocol_alone_is_detected_and_collected_from(server, toy):
    loaded: list[str] = []
    _toy_routes(server, loaded)
    server.set_model("toy-small-q4:1", Script(tokens=["one ", "two ", "three "], send_usage=False))
    out = collect(server, "small", rounds=1, warmup=0)
    run = store.load_run(out.path)
    ep = run.endpoints[0]
    assert (ep.runtime, ep.runtime_version) == ("toy", "1.2.3")
    info = run.models["small"]
    assert info.status == "ok" and info.runtime == "toy" and info.resolved_id == "toy-small-q4:1"
    assert info.license == "MIT" and info.extra["disk_bytes"] == 4096 and info.extra["quantization"] == "Q4"
    assert info.extra["load_s"] >= 0 and loaded == ["toy-small-q4:1"]
    assert info.extra["peak_rss_bytes"] == 2000 and info.extra["memory_source"] == "toy's own report"
    # Requests name the served id; tokens come from the runtime's tokenizer when the stream has no usage.
    chats = [r for r in server.requests if r["path"].startswith("/v1/chat")]
    assert chats and all(r["body"]["model"] == "toy-small-q4:1" for r in chats)
    assert {s.tokens_source for s in run.samples if s.ok} == {"tokenize"}
    # The run page names the runtime and its version.
    from bench.report.render import render

    render(out.path.parent, Path("docs"))
    assert "| toy 1.2.3 |" in (Path("docs") / "report" / "runs" / f"{run.run_id}.md").read_text()


def test_a_hostile_version_string_is_kept_short(server, toy):
    _toy_routes(server, [])
    server.routes[("GET", "/toy/version")] = (200, {"toy": True, "version": "v" * 100_000})
    server.set_model("toy-small-q4:1", Script())
    out = collect(server, "small", rounds=1, warmup=0)
    assert out.run.endpoints[0].runtime_version == "v" * 100


def test_a_load_the_runtime_refuses_fails_the_model_with_its_reason(server, toy, monkeypatch):
    _toy_routes(server, [])
    monkeypatch.setattr(Toy, "ALIASES", {**Toy.ALIASES, "broken": "toy-broken"})
    server.set_model("toy-broken", Script())
    out = collect(server, "broken", rounds=1, warmup=0)
    info = out.run.models["broken"]
    assert info.status == "failed" and "could not load 'toy-broken'" in info.reason and "out of memory" in info.reason
    assert not [r for r in server.requests if r["path"].startswith("/v1/chat")]


def test_without_its_routes_the_generic_runtime_serves_and_is_recorded(server, toy):
    server.routes[("GET", "/toy/version")] = (200, ["not", "an", "object"])  # hostile: detection must not crash
    server.set_model("m", Script())
    out = collect(server, "m", rounds=1, warmup=0)
    assert out.run.endpoints[0].runtime == "openai-compatible"
    assert out.run.models["m"].runtime == "openai-compatible" and out.run.models["m"].status == "ok"


def test_bench_yaml_can_force_a_runtime_and_names_the_known_ones(tmp_path, toy):
    from bench.config import resolve
    from bench.errors import ConfigError

    (tmp_path / "bench.yaml").write_text(
        "endpoints:\n  - {name: e, base_url: 'http://127.0.0.1:9/v1', runtime: toy}\nmodels: [{name: m}]\n")
    assert resolve(tmp_path / "bench.yaml", env={}).endpoints["e"].runtime == "toy"
    (tmp_path / "bench.yaml").write_text(
        "endpoints:\n  - {name: e, base_url: 'http://127.0.0.1:9/v1', runtime: nope}\nmodels: [{name: m}]\n")
    with pytest.raises(ConfigError, match=r"bench\.yaml:2.*unknown runtime 'nope'; known: foundry, ollama, lmstudio, llama-server, vllm, toy, openai-compatible"):
        resolve(tmp_path / "bench.yaml", env={})


def test_registering_keeps_the_generic_runtime_last():
    class A(Runtime):
        name = "a"

    runtimes.register(A)
    try:
        assert [r.name for r in runtimes.RUNTIMES][-1] == "openai-compatible"
        assert "a" in runtimes.names() and "embedded" not in runtimes.names()  # it has no endpoint to force
    finally:
        runtimes.unregister("a")
    assert "a" not in runtimes.names()


def test_the_memory_sampler_counts_a_child_started_after_it_once_the_tree_is_refreshed():
    import os
    import subprocess
    import sys

    from bench.runtimes.process import MemorySampler

    sampler = MemorySampler(os.getpid(), tree_refresh_s=0.0)
    alone = sampler.rss()
    child = subprocess.Popen([sys.executable, "-c", "import time; x = bytearray(64 << 20); time.sleep(30)"])
    try:
        import time

        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and sampler.rss() < alone + (48 << 20):
            time.sleep(0.05)
        assert sampler.rss() >= alone + (48 << 20)  # the child's 64 MiB counted
        cached = MemorySampler(os.getpid(), tree_refresh_s=3600)
        cached.rss()  # finds the tree now: the child is in it
        child.kill()
        child.wait()
        assert 0 < cached.rss() < alone + (48 << 20)  # a child that exited is skipped, the rest still counted
    finally:
        child.kill()
