"""--server-timings: a runtime that reports its own timings only on a native route gets one paired,
untimed request per measured one, cold like it; without the flag none is sent."""

from __future__ import annotations

import pytest

from bench import runtimes
from bench.config import resolve
from bench.measure import runner
from bench.results import store
from bench.results.schema import ServerTimings
from bench.runtimes.generic import OpenAICompatible
from tests.conftest import Script


class Paired(OpenAICompatible):
    name = "paired-toy"
    calls: list[tuple] = []

    @classmethod
    def detect(cls, conn) -> bool:
        return conn.get("/toy", root=True, timeout_s=5).status == 200

    def paired_timings(self, model_id, text, max_tokens, temperature, seed):
        Paired.calls.append((model_id, text, max_tokens))
        return ServerTimings(source="toy /native (paired request, untimed)", paired=True, prompt_s=0.5,
                             decode_tokens=20, decode_s=0.1)


@pytest.fixture
def toy(server):
    server.routes[("GET", "/toy")] = (200, {})
    server.set_model("m", Script(itl_s=0.005))
    Paired.calls = []
    runtimes.register(Paired)
    yield server
    runtimes.unregister(Paired.name)


def _collect(server, tmp_path, **kw):
    plan, writer = runner.prepare(resolve(None, env={}, endpoint=server.url, models="m", rounds=1, warmup=1,
                                          results_dir=tmp_path / "results"))
    return store.load_run(runner.collect(plan, writer, env={}, sleep=lambda s: None, **kw).path)


def test_paired_timings_only_with_the_flag_and_never_for_warmup(toy, tmp_path):
    run = _collect(toy, tmp_path)
    assert Paired.calls == [] and all(s.server is None for s in run.samples)
    run = _collect(toy, tmp_path, server_timings=True)
    measured = [s for s in run.samples if not s.warmup]
    assert len(Paired.calls) == len(measured) == 4
    assert all(s.server and s.server.paired and s.server.decode_tokens == 20 for s in measured)
    assert all(s.server is None for s in run.samples if s.warmup)
    # cold like the measured request: its own marker, never the measured request's text
    sent = [r["body"]["messages"][0]["content"] for r in toy.requests if r["path"] == "/v1/chat/completions"]
    for (_, text, max_tokens), s in zip(Paired.calls, measured):
        assert text.startswith("[") and text not in sent and max_tokens == 150
        assert text.split("\n", 1)[1] == next(p["text"] for p in run.workload.prompts if p["id"] == s.prompt_id)


def test_paired_requests_are_compared_on_decode_rate_only(toy, tmp_path):
    from bench.analysis.server_view import server_views

    view = server_views(_collect(toy, tmp_path, server_timings=True))["m"]
    assert view.paired and view.server_prefill_s is None  # another request's prefill is not this one's
    assert view.server_decode_tps == pytest.approx(200.0) and view.decode_ratio is not None
