"""llama.cpp's llama-server, through the scripted server answering its routes. Payload shapes
from tools/server/README.md in ggml-org/llama.cpp (GET /props, GET /v1/models with "meta", the
"timings" object of each completion)."""

from __future__ import annotations

import re

import pytest

from bench.results import store
from tests.conftest import Script, collect

MODEL = "smollm2"


def _props(n_ctx: int = 4096, **extra):
    # GET /props (tools/server/README.md, "GET /props: Get server global properties")
    return {"default_generation_settings": {"n_ctx": n_ctx, "params": {"temperature": 0.8}}, "total_slots": 1,
            "model_path": "/nonexistent/smollm2.gguf", "chat_template": "{{ messages }}", **extra}


def _timings(prompt_ms=50.0, predicted_ms=200.0, predicted_n=20):
    # the "timings" object every completion carries (README: "timings" in the /completion response)
    return {"timings": {"prompt_n": 7, "prompt_ms": prompt_ms, "prompt_per_token_ms": prompt_ms / 7,
                        "prompt_per_second": 7000 / prompt_ms, "predicted_n": predicted_n,
                        "predicted_ms": predicted_ms, "predicted_per_token_ms": predicted_ms / predicted_n,
                        "predicted_per_second": predicted_n * 1000 / predicted_ms, "cache_n": 0}}


def _write_gguf(path, kv: dict):
    """A GGUF v3 header with these metadata keys (strings, or uint32 for ints), no tensors."""
    import struct

    out = b"GGUF" + struct.pack("<IQQ", 3, 0, len(kv))
    for key, value in kv.items():
        out += struct.pack("<Q", len(key)) + key.encode()
        if isinstance(value, int):
            out += struct.pack("<II", 4, value)
        else:
            out += struct.pack("<IQ", 8, len(value.encode())) + value.encode()
    path.write_bytes(out + b"\0" * 64)
    return path


@pytest.fixture
def llama(server):
    server.routes[("GET", "/props")] = (200, _props(build_info="b6500-1a2b3c4d"))
    server.routes[("GET", "/v1/models")] = (200, {"object": "list", "data": [{
        "id": MODEL, "object": "model", "created": 0, "owned_by": "llamacpp",
        "meta": {"vocab_type": 2, "n_vocab": 49152, "n_ctx_train": 8192, "n_embd": 576,
                 "n_params": 134515008, "size": 98000000}}]})
    server.set_model(MODEL, Script(ttft_s=0.02, itl_s=0.005, final_extra=_timings()))
    return server


def test_llama_server_is_recognised_with_its_build_and_facts(llama):
    run = store.load_run(collect(llama, MODEL, rounds=1, warmup=0).path)
    assert run.endpoints[0].runtime == "llama-server" and run.endpoints[0].runtime_version == "llama.cpp b6500-1a2b3c4d"
    info = run.models[MODEL]
    assert info.status == "ok" and info.runtime == "llama-server"
    assert info.extra["context_length"] == 4096 and info.extra["parameters"] == 134515008
    assert info.extra["model_bytes"] == 98000000 and info.extra["trained_context"] == 8192
    assert info.extra["sources"]["context_length"].startswith("llama-server /props")
    assert info.extra["sources"]["parameters"] == "llama-server /v1/models meta"
    # model_path does not exist here: disk and license are unknown, with the reason
    assert "cannot read smollm2.gguf" in info.extra["unknown"]["disk_bytes"]
    assert info.extra["unknown"]["license"].startswith("cannot read smollm2.gguf: set license:")


def test_every_request_keeps_the_servers_own_timings_beside_ours(llama):
    run = store.load_run(collect(llama, MODEL, rounds=1, warmup=0).path)
    measured = [s for s in run.samples if not s.warmup]
    assert measured and all(s.server is not None for s in measured)
    t = measured[0].server
    assert t.source == "llama-server timings in the response" and not t.paired
    assert (t.prompt_tokens, t.prompt_s, t.decode_tokens, t.decode_s, t.cached_tokens) == (7, 0.05, 20, 0.2, 0)
    assert measured[0].ttft_s is not None and t.ttft_s is None  # its own TTFT is not reported: never made up


def test_timings_in_a_non_streamed_answer_are_kept_too(llama):
    run = store.load_run(collect(llama, MODEL, rounds=1, warmup=0, stream=False).path)
    assert all(s.server is not None and s.server.decode_tokens == 20 for s in run.samples if not s.warmup)


def test_an_old_build_without_build_info_has_its_version_unknown_with_the_reason(llama):
    llama.routes[("GET", "/props")] = (200, _props())
    run = store.load_run(collect(llama, MODEL, rounds=1, warmup=0).path)
    assert run.endpoints[0].runtime == "llama-server" and run.endpoints[0].runtime_version is None
    assert "no build_info" in run.models[MODEL].extra["unknown"]["runtime_version"]


def test_a_local_gguf_gives_disk_license_and_quantization(llama, tmp_path):
    path = _write_gguf(tmp_path / "m.gguf", {"general.architecture": "llama", "general.license": "apache-2.0",
                                            "general.file_type": 3, "general.size_label": "135M"})
    llama.routes[("GET", "/props")] = (200, _props(model_path=str(path), build_info="b6500-1a2b3c4d"))
    info = store.load_run(collect(llama, MODEL, rounds=1, warmup=0).path).models[MODEL]
    assert info.extra["disk_bytes"] == path.stat().st_size and info.license == "Apache-2.0"
    assert info.extra["quantization"] == "Q4_1" and info.extra["size_label"] == "135M"
    assert info.extra["sources"]["license"] == "the model's GGUF metadata"
    assert "license" not in info.extra.get("unknown", {}) and "disk_bytes" not in info.extra.get("unknown", {})


@pytest.mark.parametrize("timings", [
    {"timings": "fast"}, {"timings": {"prompt_ms": "12", "predicted_ms": None}}, {"timings": [1, 2]},
    {"timings": {"prompt_ms": -5, "predicted_ms": 1e300}}, {"timings": {f"k{i}": i for i in range(1000)}},
])
def test_hostile_timings_are_ignored_and_the_request_still_counts(llama, timings):
    llama.set_model(MODEL, Script(final_extra=timings))
    run = store.load_run(collect(llama, MODEL, rounds=1, warmup=0).path)
    measured = [s for s in run.samples if not s.warmup]
    assert measured and all(s.ok and s.server is None for s in measured)


def test_a_server_with_props_of_another_shape_is_not_taken_for_llama_server(server):
    server.routes[("GET", "/props")] = (200, {"name": "something else"})
    server.set_model("m", Script())
    run = store.load_run(collect(server, "m", rounds=1, warmup=0).path)
    assert run.endpoints[0].runtime == "openai-compatible"


def _run_page(out, tmp_path) -> str:
    from bench.report.render import render

    render(out.path.parent, tmp_path / "site")
    return next(p for p in (tmp_path / "site" / "report" / "runs").glob("*.md") if p.name != "index.md").read_text()


def test_the_run_page_shows_both_views_and_says_they_agree(llama, tmp_path):
    # 20 tokens 5 ms apart: bench measures ~200 tokens/s and a TTFT of ~20 ms; the server says the same
    llama.set_model(MODEL, Script(ttft_s=0.02, itl_s=0.005, final_extra=_timings(prompt_ms=15.0, predicted_ms=100.0)))
    page = _run_page(collect(llama, MODEL, rounds=2, warmup=0), tmp_path)
    assert "**The server's own timings** (llama-server timings in the response; 8 requests)" in page
    assert "| decode tokens/s | " in page and "| 200.0 | " in page
    assert "bench and the server agree within the tolerance" in page and "disagree" not in page


def test_a_server_whose_timings_disagree_is_flagged_on_the_run_page(llama, tmp_path):
    # the server claims half bench's decode rate and a prefill longer than bench's whole TTFT
    llama.set_model(MODEL, Script(ttft_s=0.02, itl_s=0.005, final_extra=_timings(prompt_ms=80.0, predicted_ms=200.0)))
    page = _run_page(collect(llama, MODEL, rounds=1, warmup=0), tmp_path)
    assert page.count('!!! warning "bench and the server disagree"') == 2
    assert re.search(r"decode rate: bench measured 1\d\d\.\d tokens/s, the server reports 100\.0 \(\d\.\d\d×, outside ±25%\)",
                     page)
    assert "before the server says its prefill ended (80 ms): one clock is wrong" in page


def test_a_cold_run_the_server_answered_from_its_cache_is_flagged(llama, tmp_path):
    timings = _timings(prompt_ms=15.0, predicted_ms=100.0)
    timings["timings"].update(prompt_n=2, cache_n=30)
    llama.set_model(MODEL, Script(ttft_s=0.02, itl_s=0.005, final_extra=timings))
    page = _run_page(collect(llama, MODEL, rounds=1, warmup=0), tmp_path)
    assert "the server took 94% of the prompt tokens from its cache in a cold run" in page


def test_bench_models_lists_each_check_with_its_source_and_json(llama, tmp_path):
    import json

    from tests.conftest import cli

    path = _write_gguf(tmp_path / "m.gguf", {"general.architecture": "llama", "general.license": "apache-2.0"})
    llama.routes[("GET", "/props")] = (200, _props(model_path=str(path), build_info="b6500-1a2b3c4d"))
    r = cli("models", "--endpoint", llama.url, "--models", f"{MODEL},nope", "--json")
    assert r.exit_code == 0, r.output
    rows = json.loads(r.output)
    assert "runtime llama-server llama.cpp b6500-1a2b3c4d" in rows[0]["detail"]
    smol = next(x for x in rows if x["model"] == MODEL)
    assert smol["ok"] and smol["checks"]["present"] == "yes" and smol["checks"]["loaded"] == "–"
    assert smol["checks"]["license"] == "Apache-2.0 (the model's GGUF metadata)"
    assert smol["checks"]["disk"] == f"{path.stat().st_size} bytes (size of m.gguf)"
    # the scripted server runs inside bench's own process, which bench never counts as the server
    assert smol["checks"]["memory"].startswith("unknown: bench cannot see the server's processes")
    assert next(x for x in rows if x["model"] == "nope")["checks"] == {"present": "no"}
    table = cli("models", "--endpoint", llama.url, "--models", MODEL)
    assert "each model: what its runtime tells" in table.output and "Apache-2.0" in table.output


def test_a_forced_runtime_the_endpoint_does_not_answer_like_is_used_and_flagged(server, tmp_path):
    from tests.conftest import cli

    server.set_model("m", Script())
    (tmp_path / "bench.yaml").write_text(f"endpoints:\n  - {{name: e, base_url: '{server.url}', runtime: llama-server}}\n"
                                         "models: [{name: m}]\nrounds: 1\nwarmup: 0\n")
    r = cli("collect", "--config", str(tmp_path / "bench.yaml"), "-q", "--results-dir", str(tmp_path / "results"))
    assert r.exit_code == 0, r.output
    note = ("bench.yaml says runtime llama-server, but the endpoint does not answer like llama.cpp llama-server "
            "(it answers like OpenAI-compatible server)")
    assert note in r.stderr
    run = store.load_run(next((tmp_path / "results").glob("*.json")))
    assert run.endpoints[0].runtime == "llama-server" and note in run.endpoints[0].runtime_note
    assert run.models["m"].status == "ok"
    rows = cli("models", "--config", str(tmp_path / "bench.yaml"), "--json")
    assert note in rows.output


def test_forcing_the_generic_runtime_is_never_flagged(llama):
    from bench.config import resolve
    from bench.measure.targets import open_target

    plan = resolve(None, env={}, endpoint=llama.url, models=MODEL)
    ep = plan.endpoints["default"].model_copy(update={"runtime": "openai-compatible"})
    target = open_target("default", ep, {}, 10)
    assert target.probe.runtime == "openai-compatible" and target.probe.runtime_note is None
