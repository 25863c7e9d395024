"""Cold prompts by default, the warm case on request, and servers that stop answering mid-run.

The scripted server grows a prompt cache (Script.cached_ttft_s): messages it has seen before are
answered 10x faster, as vLLM's prefix caching or llama.cpp's prompt cache would.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from bench.analysis import compare
from bench.results import stats, store
from tests.conftest import cli, collect
from tests.fake_server import FakeServer, Script

ROOT = Path(__file__).resolve().parent.parent
COLD, WARM = 0.100, 0.010


def _prompts(tmp_path: Path, n: int) -> Path:
    path = tmp_path / "prompts.json"
    path.write_text(json.dumps([f"Question number {i}: what is {i} plus {i}?" for i in range(n)]))
    return path


def _cache_server() -> FakeServer:
    return FakeServer({"m": Script(tokens=["a ", "b ", "c "], ttft_s=COLD, cached_ttft_s=WARM, itl_s=0.001)})


@pytest.mark.parametrize("n_prompts", [1, 3])
def test_default_run_measures_the_cold_prompt(tmp_path, n_prompts):
    with _cache_server() as srv:
        out = collect(srv, "m", rounds=3, prompts=_prompts(tmp_path, n_prompts))
        sent = [r["body"]["messages"] for r in srv.requests if r["path"].endswith("/chat/completions")]
    measured = [s for s in out.run.samples if not s.warmup]
    assert len(measured) == 3 * n_prompts and all(s.ok for s in measured)
    ttft = statistics.median(s.ttft_s for s in measured)
    assert ttft > 0.8 * COLD, f"median TTFT {ttft * 1000:.1f} ms is the cached one"
    # Every measured prompt reached the server as a text it had not seen: a marker before it.
    for s in measured:
        assert s.cache_nonce and any(m[0]["content"].startswith(f"[{s.cache_nonce}]\n") for m in sent)
    assert len({json.dumps(m) for m in sent}) == len(sent)
    assert out.run.workload.prompt_cache == "cold"
    assert out.run.models["m"].extra["prompt_cache"]["mechanism"] == "nonce"


def test_warm_case_is_measured_only_when_asked_and_labelled(tmp_path):
    with _cache_server() as srv:
        cold = collect(srv, "m", rounds=2, prompts=_prompts(tmp_path, 2))
        warm = collect(srv, "m", rounds=2, prompts=_prompts(tmp_path, 2), prompt_cache="warm")
    measured = [s for s in warm.run.samples if not s.warmup]
    assert statistics.median(s.ttft_s for s in measured) < 0.5 * COLD
    assert all(s.cache_nonce is None for s in measured)
    assert warm.run.workload.prompt_cache == "warm"
    assert warm.run.models["m"].extra["prompt_cache"] == {"mode": "warm", "mechanism": "prime",
                                                         "unmeasured_requests": 4}
    # The choice is part of the workload: cold and warm runs are never diffed as the same thing.
    assert warm.run.workload.hash != cold.run.workload.hash
    d = compare.diff(compare.resolve_side(str(cold.path), Path("results")),
                     compare.resolve_side(str(warm.path), Path("results")))
    assert {r.status for r in d.rows} == {"not comparable"}
    assert "prompt-cache modes (cold vs warm)" in d.rows[0].reason


def test_runs_recorded_before_cache_control_upgrade_as_unknown_and_keep_their_hash():
    committed = sorted((ROOT / "results").glob("*.json"))
    old = [p for p in committed if json.loads(p.read_text())["schema_version"] < 3]
    assert old, "the repository keeps runs recorded before schema version 3"
    for path in old:
        raw = json.loads(path.read_text())
        run = store.load_run(path)
        assert run.workload.prompt_cache == "unknown"
        assert run.workload.hash == raw["workload"]["hash"]
        assert stats.run_stats(run)  # still loads and summarises: visible on the site


def test_old_runs_are_not_compared_on_ttft_with_cold_runs(tmp_path):
    old = next(p for p in sorted((ROOT / "results").glob("*.json"))
               if json.loads(p.read_text())["schema_version"] < 3)
    run = store.load_run(old)
    model = next(iter(run.models))
    new = run.model_copy(deep=True)
    new.workload = store.workload(run.workload.prompts, run.workload.generation, "cold")
    new.run_id = run.run_id + "-new"
    path = tmp_path / f"{new.run_id}.json"
    path.write_text(json.dumps(new.model_dump(mode="json")))
    d = compare.diff(compare.resolve_side(str(old), tmp_path), compare.resolve_side(str(path), tmp_path))
    rows = [r for r in d.rows if r.model == model]
    assert [r.status for r in rows] == ["not comparable"]
    assert "unknown vs cold" in rows[0].reason and "TTFT" in rows[0].reason


class _StopAfterFirst:
    """A reporter that stops the first server right after model a's first measured request."""

    def __init__(self, server: FakeServer):
        self.server, self.stopped = server, False

    def start(self, run, total):
        pass

    def model(self, key, info):
        pass

    def sample(self, sample):
        if sample.model == "a" and not sample.warmup and not self.stopped:
            self.stopped = True
            self.server.stop()


def test_a_server_that_stops_answering_is_named_and_its_model_stops_at_once(tmp_path):
    from bench import config
    from bench.measure import runner

    a, b = FakeServer({"a": Script(tokens=["x "])}), FakeServer({"b": Script(tokens=["y "])})
    with a, b:
        Path("bench.yaml").write_text(
            f"endpoints:\n  - name: one\n    base_url: {a.url}\n  - name: two\n    base_url: {b.url}\n"
            "models:\n  - name: a\n    endpoint: one\n  - name: b\n    endpoint: two\nrounds: 4\n")
        plan = config.resolve(Path("bench.yaml"), env={})
        plan, writer = runner.prepare(plan)
        out = runner.collect(plan, writer, env={}, reporter=_StopAfterFirst(a), sleep=lambda s: None)
        tried = len([r for r in a.requests if r["path"].endswith("/chat/completions")])
    info = out.run.models["a"]
    assert info.status == "failed"
    assert "stopped answering mid-run" in info.reason and "remaining" in info.reason
    failed = [s for s in out.run.samples if s.model == "a" and not s.ok]
    assert len(failed) == 1, "one failed request, then the model stops (no three connection refused)"
    assert tried == 2  # warmup + the first measured request
    assert out.run.models["b"].status == "ok"
    assert sum(s.ok for s in out.run.samples if s.model == "b" and not s.warmup) == 4 * 4


def test_cli_exits_non_zero_when_a_model_was_not_measured():
    with FakeServer({"m": Script(tokens=["x "])}) as server:
        r = cli("collect", "--endpoint", server.url, "--models", "m,nope", "--rounds", "1", "-q")
    assert r.exit_code == 1
    assert "1 of 2 models were not measured (nope)" in r.stderr and "Traceback" not in r.stderr
