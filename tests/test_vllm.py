"""vLLM, through the scripted server answering its routes. Payloads as docs.vllm.ai shows them
("OpenAI-Compatible Server": /version, /v1/models with max_model_len and root; "Production
Metrics": /metrics)."""

from __future__ import annotations

import pytest

from bench.results import store
from bench.runtimes.vllm import parse_metrics
from tests.conftest import Script, collect
from tests.fake_server import Raw

MODEL = "Qwen/Qwen2.5-0.5B-Instruct"
METRICS = b"""# HELP vllm:num_requests_running Number of requests currently running on GPU.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="Qwen/Qwen2.5-0.5B-Instruct"} 0.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{model_name="Qwen/Qwen2.5-0.5B-Instruct"} 0.0
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="Qwen/Qwen2.5-0.5B-Instruct"} 0.015
# TYPE vllm:prefix_cache_queries_total counter
vllm:prefix_cache_queries_total{engine="0",model_name="Qwen/Qwen2.5-0.5B-Instruct"} 1200.0
# TYPE vllm:prefix_cache_hits_total counter
vllm:prefix_cache_hits_total{engine="0",model_name="Qwen/Qwen2.5-0.5B-Instruct"} 64.0
vllm:time_to_first_token_seconds_bucket{le="0.001",model_name="Qwen/Qwen2.5-0.5B-Instruct"} 0.0
"""


@pytest.fixture
def vllm(server):
    server.routes[("GET", "/version")] = (200, {"version": "0.11.0"})
    server.routes[("GET", "/v1/models")] = (200, {"object": "list", "data": [{
        "id": MODEL, "object": "model", "created": 1731990317, "owned_by": "vllm", "root": MODEL, "parent": None,
        "max_model_len": 32768, "permission": [{"id": "modelperm-1", "object": "model_permission"}]}]})
    server.routes[("GET", "/metrics")] = (200, Raw(METRICS, "text/plain; version=0.0.4"))
    server.set_model(MODEL, Script())
    return server


def test_vllm_is_recognised_with_version_context_weights_and_metrics(vllm, tmp_path):
    out = collect(vllm, MODEL, rounds=1, warmup=0)
    run = store.load_run(out.path)
    assert run.endpoints[0].runtime == "vllm" and run.endpoints[0].runtime_version == "0.11.0"
    x = run.models[MODEL].extra
    assert x["context_length"] == 32768 and x["weights_root"] == MODEL and "load_s" not in x
    assert x["server_metrics"] == {"requests_running": 0.0, "requests_waiting": 0.0, "kv_cache_usage": 0.015,
                                   "prefix_cache_queries": 1200.0, "prefix_cache_hits": 64.0}
    assert x["sources"]["server_metrics"] == "vLLM /metrics" and "license" in x["unknown"]
    assert all(s.server is None for s in run.samples)  # vLLM reports no per-request timings
    from bench.report.render import render

    render(out.path.parent, tmp_path / "site")
    page = next(p for p in (tmp_path / "site" / "report" / "runs").glob("*.md") if p.name != "index.md").read_text()
    assert "| server metrics after loading | " in page and "prefix-cache hits (tokens): 64.0" in page


def test_a_server_answering_version_but_not_owned_by_vllm_is_not_vllm(server):
    server.routes[("GET", "/version")] = (200, {"version": "1.0"})
    server.set_model("m", Script())
    assert store.load_run(collect(server, "m", rounds=1, warmup=0).path).endpoints[0].runtime == "openai-compatible"


def test_metrics_parsing_ignores_junk_and_sums_labels():
    text = ("vllm:num_requests_running{a=\"1\"} 2\nvllm:num_requests_running{a=\"2\"} 3\n"
            "vllm:num_requests_waiting NaN\nvllm:num_requests_waiting{x=\"}\"} -4\n"
            "vllm:gpu_cache_usage_perc 0.5 1731990317\n" + "garbage line\n" * 10 + "x" * 10_000 + "\n"
            "vllm:prefix_cache_hits_total{} not-a-number\n")
    assert parse_metrics(text) == {"requests_running": 5.0, "kv_cache_usage": 0.5}
    assert parse_metrics("") == {} and parse_metrics("#only comments\n") == {}


def test_bench_models_shows_vllm_checks(vllm):
    from bench.config import resolve
    from bench.measure.probe import checklist

    rows = checklist(resolve(None, env={}, endpoint=vllm.url, models=MODEL, require_endpoint=False), env={},
                     timeout_s=10)
    assert "runtime vllm 0.11.0" in rows[0].detail
    row = next(r for r in rows if r.model == MODEL)
    assert row.ok and row.checks["license"].startswith("unknown: vLLM does not report it")
