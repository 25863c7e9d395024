"""LM Studio, through the scripted server answering its REST API v0. Payloads as
lmstudio.ai/docs/app/api/endpoints/rest shows them ("GET /api/v0/models", "POST
/api/v0/chat/completions" response format)."""

from __future__ import annotations

import pytest

from bench.config import resolve
from bench.measure import runner
from bench.results import store
from tests.conftest import Script, collect

MODEL = "granite-3.0-2b-instruct"


def _models(state: str) -> dict:
    # "GET /api/v0/models" response format
    return {"object": "list", "data": [
        {"id": MODEL, "object": "model", "type": "llm", "publisher": "ibm-research", "arch": "granite",
         "compatibility_type": "gguf", "quantization": "Q4_K_M", "state": state, "max_context_length": 4096},
        {"id": "qwen2-vl-7b-instruct", "object": "model", "type": "vlm", "publisher": "mlx-community",
         "arch": "qwen2_vl", "compatibility_type": "mlx", "quantization": "4bit", "state": "not-loaded",
         "max_context_length": 32768}]}


def _chat(body: dict) -> dict:
    # "POST /api/v0/chat/completions" response format: an OpenAI completion plus stats, model_info, runtime
    return {"id": "chatcmpl-i3gkjwthhw96whukek9tz", "object": "chat.completion", "created": 1731990317,
            "model": body["model"], "choices": [{"index": 0, "logprobs": None, "finish_reason": "stop",
                                                 "message": {"role": "assistant", "content": "Greetings"}}],
            "usage": {"prompt_tokens": 24, "completion_tokens": 53, "total_tokens": 77},
            "stats": {"tokens_per_second": 51.43709529007664, "time_to_first_token": 0.111, "generation_time": 0.954,
                      "stop_reason": "eosFound"},
            "model_info": {"arch": "granite", "quant": "Q4_K_M", "format": "gguf", "context_length": 4096},
            "runtime": {"name": "llama.cpp-mac-arm64-apple-metal-advsimd", "version": "1.3.0",
                        "supported_formats": ["gguf"]}}


@pytest.fixture
def lmstudio(server):
    state = {"loaded": False, "chats": []}
    server.routes[("GET", "/api/v0/models")] = lambda body: (200, _models("loaded" if state["loaded"] else "not-loaded"))

    def chat(body):
        state["chats"].append(body)
        state["loaded"] = True  # LM Studio loads just in time, on the first request
        return 200, _chat(body)

    server.routes[("POST", "/api/v0/chat/completions")] = chat
    server.set_model(MODEL, Script(ttft_s=0.01, itl_s=0.002))
    server.state = state
    return server


def test_lm_studio_is_recognised_loaded_timed_and_described(lmstudio):
    run = store.load_run(collect(lmstudio, MODEL, rounds=1, warmup=0).path)
    assert run.endpoints[0].runtime == "lmstudio"
    info = run.models[MODEL]
    assert info.status == "ok" and info.extra["load_s"] >= 0 and len(lmstudio.state["chats"]) == 1
    assert lmstudio.state["chats"][0]["max_tokens"] == 1  # the load: one token, not a measured request
    x = info.extra
    assert (x["quantization"], x["family"], x["format"], x["context_length"], x["publisher"]) == (
        "Q4_K_M", "granite", "gguf", 4096, "ibm-research")
    assert x["sources"]["quantization"] == "LM Studio /api/v0/models"
    assert x["engine"] == "llama.cpp-mac-arm64-apple-metal-advsimd 1.3.0"
    assert "does not report it" in x["unknown"]["disk_bytes"] and "license" in x["unknown"]


def test_a_loaded_model_is_not_loaded_again_and_the_engine_version_is_unknown_until_named(lmstudio):
    lmstudio.state["loaded"] = True
    run = store.load_run(collect(lmstudio, MODEL, rounds=1, warmup=0).path)
    info = run.models[MODEL]
    assert "load_s" not in info.extra and lmstudio.state["chats"] == []
    assert run.endpoints[0].runtime_version is None and "none was seen" in info.extra["unknown"]["runtime_version"]


def test_paired_requests_read_lm_studios_own_stats(lmstudio):
    lmstudio.state["loaded"] = True
    plan, writer = runner.prepare(resolve(None, env={}, endpoint=lmstudio.url, models=MODEL, rounds=1, warmup=0))
    run = runner.collect(plan, writer, env={}, sleep=lambda s: None, server_timings=True).run
    t = next(s.server for s in run.samples if not s.warmup)
    assert t.paired and t.ttft_s == 0.111 and t.decode_tokens == 53 and t.prompt_tokens == 24
    assert t.decode_tokens / t.decode_s == pytest.approx(51.43709529007664)  # its own rate, as it reports it
    assert lmstudio.state["chats"][0]["stream"] is False


@pytest.mark.parametrize("stats", [None, "fast", {"tokens_per_second": "x"}, {"time_to_first_token": -1},
                                   {"tokens_per_second": float("inf")}])
def test_hostile_stats_are_no_timings(stats):
    from bench.runtimes.lmstudio import chat_stats

    body = _chat({"model": MODEL})
    body["stats"] = stats
    assert chat_stats(body) is None


def test_a_server_with_api_v0_models_of_another_shape_is_not_lm_studio(server):
    server.routes[("GET", "/api/v0/models")] = (200, {"data": [{"id": "m"}]})
    server.set_model("m", Script())
    assert store.load_run(collect(server, "m", rounds=1, warmup=0).path).endpoints[0].runtime == "openai-compatible"


def test_bench_models_shows_lm_studio_checks(lmstudio):
    from bench.measure.probe import checklist

    rows = checklist(resolve(None, env={}, endpoint=lmstudio.url, models=MODEL, require_endpoint=False), env={},
                     timeout_s=10)
    row = next(r for r in rows if r.model == MODEL)
    assert row.ok and row.checks["loaded"].startswith("loaded now, in ")
    assert row.checks["disk"] == "unknown: LM Studio's REST API does not report it"
