"""Ollama, through the scripted server answering its native routes. Every payload is shaped as
docs/api.md in github.com/ollama/ollama documents it (the section is named at each one)."""

from __future__ import annotations

import json

import pytest

from bench.config import resolve
from bench.measure import runner
from bench.results import store
from tests.conftest import Script, collect
from tests.fake_server import Raw

NAME, ID = "llama3.2", "llama3.2:latest"
LICENSE = "LLAMA 3.2 COMMUNITY LICENSE AGREEMENT\nLlama 3.2 Version Release Date: September 25, 2024\n..."


def _tags(*names: str) -> dict:
    # "List Local Models": GET /api/tags
    return {"models": [{"name": n, "model": n, "modified_at": "2025-05-04T17:37:44.706015396-07:00",
                        "size": 2019393189, "digest": "a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72",
                        "details": {"parent_model": "", "format": "gguf", "family": "llama", "families": ["llama"],
                                    "parameter_size": "3.2B", "quantization_level": "Q4_K_M"}} for n in names]}


def _show() -> dict:
    # "Show Model Information": POST /api/show
    return {"license": LICENSE, "modelfile": "# Modelfile ...", "template": "{{ .Prompt }}",
            "details": {"format": "gguf", "family": "llama", "parameter_size": "3.2B", "quantization_level": "Q4_K_M"},
            "model_info": {"general.architecture": "llama", "general.parameter_count": 3212749888,
                           "llama.context_length": 131072}}


def _ps(name: str) -> dict:
    # "List Running Models": GET /api/ps
    return {"models": [{"name": name, "model": name, "size": 3338801804, "digest": "a80c4f17", "details": {},
                        "expires_at": "2024-06-04T14:38:31.83753-07:00", "size_vram": 3338801804}]}


@pytest.fixture
def ollama(server):
    state = {"loaded": [], "loads": [], "pulled": True}
    server.routes[("GET", "/api/version")] = (200, {"version": "0.12.3"})  # "Version": GET /api/version
    server.routes[("GET", "/api/tags")] = lambda body: (200, _tags(ID) if state["pulled"] else _tags())
    server.routes[("POST", "/api/show")] = (200, _show())
    server.routes[("GET", "/api/ps")] = lambda body: (200, _ps(ID) if state["loaded"] else {"models": []})

    def generate(body):  # "Load a model": POST /api/generate with an empty prompt
        state["loads"].append(body["model"])
        if not state["pulled"] or body["model"] != ID:  # Ollama has pulled only ID
            return 404, {"error": f"model '{body['model']}' not found, try pulling it first"}
        state["loaded"].append(body["model"])
        return 200, {"model": body["model"], "created_at": "2023-12-18T19:52:07.071755Z", "response": "",
                     "done": True, "done_reason": "load", "load_duration": 1_234_000_000}

    server.routes[("POST", "/api/generate")] = generate
    server.set_model(ID, Script(ttft_s=0.01, itl_s=0.002))
    server.state = state
    return server


def test_ollama_is_recognised_and_its_facts_recorded_with_their_source(ollama):
    run = store.load_run(collect(ollama, NAME, rounds=1, warmup=0).path)
    assert run.endpoints[0].runtime == "ollama" and run.endpoints[0].runtime_version == "0.12.3"
    info = run.models[NAME]
    assert info.status == "ok" and info.runtime == "ollama" and info.resolved_id == ID
    assert ollama.state["loads"] == [ID] and info.extra["load_s"] >= 0 and info.extra["runtime_load_s"] == 1.234
    x = info.extra
    assert (x["disk_bytes"], x["digest"][:8], x["quantization"], x["family"], x["format"]) == (
        2019393189, "a80c4f17", "Q4_K_M", "llama", "gguf")
    assert x["parameters"] == 3212749888 and x["sources"]["parameters"] == "Ollama /api/show"  # exact beats "3.2B"
    assert x["context_length"] == 131072 and x["sources"]["disk_bytes"] == "Ollama /api/tags"
    assert info.license == "Llama 3.2 Community License" and x["license_raw"].startswith("LLAMA 3.2 COMMUNITY")
    assert x["sources"]["license"] == "Ollama /api/show"
    assert x["runtime_memory_bytes"] == 3338801804 and x["vram_bytes"] == 3338801804
    assert x["sources"]["runtime_memory_bytes"] == "Ollama /api/ps" and "unknown" not in x


def test_a_loaded_model_is_not_loaded_again(ollama):
    ollama.state["loaded"].append(ID)
    info = collect(ollama, NAME, rounds=1, warmup=0).run.models[NAME]
    assert info.status == "ok" and "load_s" not in info.extra and ollama.state["loads"] == []


def test_a_model_not_pulled_is_skipped_and_pulled_only_with_the_flag(ollama, tmp_path):
    ollama.state["pulled"] = False
    ollama.routes[("GET", "/api/tags")] = (200, _tags())
    ollama.routes[("GET", "/v1/models")] = (200, {"object": "list", "data": []})  # lists nothing, like Ollama
    pulls = []

    def pull(body):  # "Pull a Model": POST /api/pull, streamed progress lines
        pulls.append(body["model"])
        ollama.state["pulled"] = True
        lines = [{"status": "pulling manifest"}, {"status": "pulling a80c4f17", "digest": "sha256:a80c", "total": 200,
                                                  "completed": 100},
                 {"status": "pulling a80c4f17", "total": 200, "completed": 200}, {"status": "success"}]
        return 200, Raw(b"".join(json.dumps(x).encode() + b"\n" for x in lines), "application/x-ndjson")

    ollama.routes[("POST", "/api/pull")] = pull
    info = collect(ollama, ID, rounds=1, warmup=0).run.models[ID]
    assert info.status == "skipped" and "ollama pull llama3.2:latest" in info.reason and pulls == []
    plan, writer = runner.prepare(resolve(None, env={}, endpoint=ollama.url, models=ID, rounds=1, warmup=0,
                                          results_dir=tmp_path))
    notes = []

    class Notes:
        def start(self, run, total): pass
        def model(self, key, info): pass
        def sample(self, sample): pass
        def note(self, text): notes.append(text)

    info = runner.collect(plan, writer, env={}, sleep=lambda s: None, download=True, reporter=Notes()).run.models[ID]
    assert pulls == [ID] and info.status == "ok" and info.extra["download"]["seconds"] >= 0
    assert notes[0].startswith(f"{ID}: downloading {ID}") and f"{ID}: 50% downloaded" in notes
    assert notes[-1] == f"{ID}: 100% downloaded"


def test_a_model_not_pulled_while_others_are_is_offered_for_pull_with_the_closest_names(ollama, tmp_path):
    # Ollama lists only pulled models: a name missing from a non-empty list may be one to pull,
    # or a typo. Both are said; --download pulls it.
    ollama.state["pulled"] = False
    listed = {"object": "list", "data": [{"id": "llama3.1:latest", "object": "model"}, {"id": "qwen3:0.6b"}]}
    ollama.routes[("GET", "/v1/models")] = (200, listed)
    info = collect(ollama, NAME, rounds=1, warmup=0).run.models[NAME]
    assert info.status == "skipped" and "ollama pull llama3.2:latest" in info.reason
    assert info.reason.endswith("pulled models closest to the name: llama3.1:latest")
    assert ollama.state["loads"] == [ID]

    def pull(body):
        ollama.state["pulled"] = True
        return 200, Raw(b'{"status":"success"}\n', "application/x-ndjson")

    ollama.routes[("POST", "/api/pull")] = pull
    plan, writer = runner.prepare(resolve(None, env={}, endpoint=ollama.url, models=NAME, rounds=1, warmup=0,
                                          results_dir=tmp_path))
    info = runner.collect(plan, writer, env={}, sleep=lambda s: None, download=True).run.models[NAME]
    assert info.status == "ok" and info.resolved_id == ID and info.extra["download"]["seconds"] >= 0


def test_a_pull_that_fails_fails_that_model_in_one_line(ollama, tmp_path):
    ollama.state["pulled"] = False
    ollama.routes[("POST", "/api/pull")] = (200, Raw(b'{"status":"pulling manifest"}\n{"error":"pull model manifest: '
                                                     b'file does not exist"}\n', "application/x-ndjson"))
    plan, writer = runner.prepare(resolve(None, env={}, endpoint=ollama.url, models=ID, rounds=1, warmup=0,
                                          results_dir=tmp_path))
    info = runner.collect(plan, writer, env={}, sleep=lambda s: None, download=True).run.models[ID]
    assert info.status == "failed" and info.reason == ("Ollama could not pull llama3.2:latest: 'pull model manifest: "
                                                       "file does not exist'")


def test_paired_requests_read_ollamas_own_timings(ollama):
    # "Chat Request (No streaming)": POST /api/chat, durations in nanoseconds
    ollama.routes[("POST", "/api/chat")] = lambda body: (200, {
        "model": body["model"], "message": {"role": "assistant", "content": "Hello"}, "done": True,
        "total_duration": 5191566416, "load_duration": 2154458, "prompt_eval_count": 26,
        "prompt_eval_duration": 383809000, "eval_count": 298, "eval_duration": 4799921000})
    run = store.load_run(collect(ollama, NAME, rounds=1, warmup=0).path)
    assert all(s.server is None for s in run.samples)  # without --server-timings: none asked
    plan, writer = runner.prepare(resolve(None, env={}, endpoint=ollama.url, models=NAME, rounds=1, warmup=0))
    run = runner.collect(plan, writer, env={}, sleep=lambda s: None, server_timings=True).run
    t = next(s.server for s in run.samples if not s.warmup)
    assert t.paired and t.source == "Ollama /api/chat (paired request, untimed)"
    assert (t.prompt_tokens, t.prompt_s, t.decode_tokens, t.decode_s) == (26, 0.383809, 298, 4.799921)
    chats = [r["body"] for r in ollama.requests if r["path"] == "/api/chat"]
    assert chats and chats[0]["stream"] is False and chats[0]["options"]["num_predict"] == 150


@pytest.mark.parametrize("junk", [
    {"models": "all"}, {"models": [{"name": ID, "size": "big", "details": [1]}]}, [1, 2],
    {"models": [{"name": ID, "size": -5, "digest": "x" * 100_000, "details": {"parameter_size": "lots"}}]},
])
def test_hostile_answers_are_ignored_or_bounded_never_fatal(ollama, junk):
    ollama.routes[("GET", "/api/tags")] = (200, junk)
    ollama.routes[("POST", "/api/show")] = (200, {"license": 42, "model_info": {"general.parameter_count": "many"}})
    ollama.routes[("GET", "/api/ps")] = (200, {"models": [{"name": ID, "size": True}]})
    info = collect(ollama, NAME, rounds=1, warmup=0).run.models[NAME]
    assert info.status == "ok"
    assert "disk_bytes" not in info.extra and "parameters" not in info.extra and info.license is None
    assert len(info.extra.get("digest", "")) <= 200 and "runtime_memory_bytes" not in info.extra


def test_a_server_answering_api_version_with_something_else_is_not_ollama(server):
    server.routes[("GET", "/api/version")] = (200, ["0.1"])
    server.set_model("m", Script())
    assert store.load_run(collect(server, "m", rounds=1, warmup=0).path).endpoints[0].runtime == "openai-compatible"


def test_bench_models_shows_the_checklist_for_ollama(ollama):
    from bench.measure.probe import checklist

    rows = checklist(resolve(None, env={}, endpoint=ollama.url, models=f"{NAME},llama3", require_endpoint=False),
                     env={}, timeout_s=10)
    assert "runtime ollama 0.12.3" in rows[0].detail
    row = next(r for r in rows if r.model == NAME)
    assert row.checks["present"] == f"yes as {ID}" and row.checks["loaded"].startswith("loaded now, in ")
    assert row.checks["license"] == "Llama 3.2 Community License (Ollama /api/show)"
    assert row.checks["disk"] == "2.0 GB (Ollama /api/tags)"
    missing = next(r for r in rows if r.model == "llama3")
    assert not missing.ok and "ollama pull llama3:latest" in missing.detail
    assert "closest to the name: llama3.2:latest" in missing.detail


def test_the_run_page_shows_each_fact_with_its_source(ollama, tmp_path):
    from bench.report.render import render

    out = collect(ollama, NAME, rounds=1, warmup=0)
    render(out.path.parent, tmp_path / "site")
    page = next(p for p in (tmp_path / "site" / "report" / "runs").glob("*.md") if p.name != "index.md").read_text()
    assert "| runtime fact | value | from |" in page
    assert "| disk footprint | 1.9 GiB | Ollama /api/tags |" in page
    assert "| memory the runtime reports | 3.1 GiB | Ollama /api/ps |" in page
    assert "| license | Llama 3.2 Community License | Ollama /api/show |" in page
    assert "| license text | LLAMA 3.2 COMMUNITY LICENSE AGREEMENT | Ollama /api/show |" in page
    selection = (tmp_path / "site" / "report" / "selection.md").read_text()
    assert "| llama3.2 | 3.1 GiB (Ollama /api/ps) | 1.9 GiB (Ollama /api/tags) | Llama 3.2 Community License " \
           "(Ollama /api/show) |" in selection
