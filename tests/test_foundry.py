"""Foundry Local, through the scripted server answering its routes as foundry-local-sdk 2.2.1's web
service does (shapes recorded from the real service; see bench/runtimes/foundry.py)."""

from __future__ import annotations

import json
import os
from types import SimpleNamespace

import pytest

from bench.config import resolve
from bench.measure import runner
from bench.results import store
from tests.conftest import Script, collect

ALIAS = "smollm2-135m-instruct"
ID = "smollm2-135m-instruct-generic-cpu:1"


@pytest.fixture
def foundry(server, tmp_path):
    """The scripted server as a Foundry Local service with one cached model, nothing loaded."""
    cache = tmp_path / "cache"
    folder = cache / "HuggingFaceTB" / "smollm2-135m-instruct-generic-cpu-1"
    folder.mkdir(parents=True)
    (folder / "genai_config.json").write_text("{}")
    (folder / "model.onnx.data").write_bytes(b"\0" * 4096)
    (folder / "inference_model.json").write_text(json.dumps({"Name": ID}))
    state = {"loaded": [], "loads": []}
    server.routes[("GET", "/status")] = (200, {"endpoints": [server.url[:-3]], "modelCachePath": str(cache),
                                               "pid": os.getpid()})
    server.routes[("GET", "/models/loaded")] = lambda body: (200, list(state["loaded"]))

    def load(name):
        def answer(body):
            state["loads"].append(name)
            if name != ALIAS:  # 2.2.1 loads by alias; an id answers 404
                return 404, {"error": {"message": f"Model not found: No model matching '{name}'"}}
            state["loaded"].append(ID)
            return 200, {"status": "loaded"}
        return answer

    server.routes[("GET", f"/models/load/{ALIAS}")] = server.loader = load(ALIAS)
    server.routes[("GET", f"/models/load/{ID}")] = load(ID)
    server.routes[("GET", f"/v1/models/{ID}")] = (200, {"id": ID, "object": "model", "owned_by": "HuggingFaceTB",
                                                        "created": 0})
    server.set_model(ID, Script())
    server.state = state
    return server


def test_an_alias_is_resolved_loaded_timed_and_described(foundry):
    out = collect(foundry, ALIAS, rounds=1, warmup=0)
    run = store.load_run(out.path)
    assert run.endpoints[0].runtime == "foundry" and run.endpoints[0].runtime_version is None
    info = run.models[ALIAS]
    assert info.status == "ok" and info.runtime == "foundry" and info.resolved_id == ID
    assert foundry.state["loads"] == [ID, ALIAS]  # the id first; 2.2.1 wants the alias
    assert info.extra["load_s"] >= 0 and info.extra["variant"] == ID and info.extra["publisher"] == "HuggingFaceTB"
    assert info.extra["disk_bytes"] == 4096 + 2 + len(json.dumps({"Name": ID}))
    assert "not reported by Foundry Local" in info.extra["unknown"]["license"] and info.license is None
    assert "not reported" in info.extra["unknown"]["runtime_version"]
    assert info.extra["peak_rss_bytes"] > 0 and "from its /status" in info.extra["memory_source"]
    chats = [i for i, r in enumerate(foundry.requests) if r["path"].startswith("/v1/chat")]
    loads = [i for i, r in enumerate(foundry.requests) if r["path"].startswith("/models/load")]
    assert chats and max(loads) < min(chats)  # loaded before the first request
    assert all(foundry.requests[i]["body"]["model"] == ID for i in chats)


def test_a_loaded_model_is_not_loaded_again(foundry):
    foundry.state["loaded"].append(ID)
    out = collect(foundry, ID, rounds=1, warmup=0)
    assert out.run.models[ID].status == "ok" and "load_s" not in out.run.models[ID].extra
    assert foundry.state["loads"] == []


def test_an_unknown_alias_lists_what_the_service_has(foundry):
    out = collect(foundry, "phi-4-mini", rounds=1, warmup=0)
    info = out.run.models["phi-4-mini"]
    assert info.status == "skipped" and "does not serve 'phi-4-mini'" in info.reason and ID in info.reason
    assert "closest" not in info.reason  # nothing like it


def test_a_mistyped_alias_names_the_closest_models(foundry):
    out = collect(foundry, "smolm2-135m-instruct", rounds=1, warmup=0)  # the alias is smollm2-135m-instruct
    info = out.run.models["smolm2-135m-instruct"]
    assert info.status == "skipped" and f"closest: {ID}" in info.reason
    out = collect(foundry, "smolm2-135m-instruct-generic-cpu:1", rounds=1, warmup=0)  # a typo in the id
    assert f"closest: {ID}" in out.run.models["smolm2-135m-instruct-generic-cpu:1"].reason


def test_a_refused_load_fails_the_model_with_the_service_message(foundry):
    foundry.routes[("GET", f"/models/load/{ALIAS}")] = (500, {"error": {"message": "out of memory"}})
    out = collect(foundry, ALIAS, rounds=1, warmup=0)
    info = out.run.models[ALIAS]
    assert info.status == "failed" and "out of memory" in info.reason
    assert not [r for r in foundry.requests if r["path"].startswith("/v1/chat")]


def test_two_variants_of_an_alias_resolve_only_when_one_is_loaded(foundry):
    gpu = "smollm2-135m-instruct-cuda-gpu:1"
    foundry.set_model(gpu, Script())
    out = collect(foundry, ALIAS, rounds=1, warmup=0)
    assert out.run.models[ALIAS].status == "skipped"  # ambiguous: never guessed
    foundry.state["loaded"].append(gpu)
    out = collect(foundry, ALIAS, rounds=1, warmup=0)
    assert out.run.models[ALIAS].status == "ok" and out.run.models[ALIAS].resolved_id == gpu


NOT_CACHED = (400, {"error": {"message": "Model not cached: Model must be downloaded before loading"}})


def test_a_model_that_is_not_downloaded_is_never_downloaded_and_says_how(foundry):
    # What 2.2.1's service answers for a catalog model that is not in its cache.
    foundry.routes[("GET", f"/models/load/{ALIAS}")] = NOT_CACHED
    out = collect(foundry, ALIAS, rounds=1, warmup=0)
    info = out.run.models[ALIAS]
    assert info.status == "skipped" and "is not downloaded (size not reported by Foundry Local's web service)" \
        in info.reason
    assert f"foundry model download {ALIAS}" in info.reason and "downloads models only when asked" in info.reason
    assert info.extra["not_downloaded"] == {"size_bytes": None}
    assert not [r for r in foundry.requests if r["path"].startswith("/v1/chat")]


def test_a_service_bench_found_is_never_downloaded_into_even_with_the_flag(foundry, tmp_path):
    foundry.routes[("GET", f"/models/load/{ALIAS}")] = NOT_CACHED
    plan, writer = runner.prepare(resolve(None, env={}, endpoint=foundry.url, models=ALIAS, rounds=1, warmup=0,
                                          results_dir=tmp_path))
    info = runner.collect(plan, writer, env={}, sleep=lambda s: None, download=True).run.models[ALIAS]
    assert info.status == "skipped" and "bench downloads only into a Foundry Local it started" in info.reason


class FakeSDK:
    """foundry-local-sdk 2.2.1's manager as far as bench uses it: catalog.get_model(alias).id (the
    variant it picks), catalog.get_model_variant(id).info (ModelInfo's fields) and .download()."""

    def __init__(self, variants: dict, download=None):
        self.variants, self._download = variants, download
        self.catalog = self

    def get_model(self, alias):
        ids = [i for i, v in self.variants.items() if v.get("alias") == alias]
        return SimpleNamespace(id=ids[0]) if ids else None

    def get_model_variant(self, model_id):
        v = self.variants.get(model_id)
        if v is None:
            return None
        info = SimpleNamespace(license=v.get("license"), license_description=None, publisher=v.get("publisher"),
                               file_size_mb=v.get("size_mb"), runtime=SimpleNamespace(
                                   execution_provider=v.get("ep", ""), device_type=v.get("device")))
        return SimpleNamespace(info=info, download=lambda progress_callback=None: self._download(model_id,
                                                                                                 progress_callback))


def _started_by_bench(foundry, monkeypatch, sdk):
    from bench.runtimes import foundry as foundry_runtime
    from bench.runtimes.base import OwnServer

    monkeypatch.setattr(foundry_runtime.FoundryLocal, "own_server", classmethod(lambda cls, options: OwnServer(
        foundry.url, f"started by bench through foundry-local-sdk at {foundry.url}", version="foundry-local-sdk 2.2.1",
        handle=sdk)))


def test_a_missing_model_is_downloaded_only_with_the_flag_and_the_download_is_timed(foundry, tmp_path, monkeypatch):
    foundry.routes[("GET", f"/models/load/{ALIAS}")] = NOT_CACHED
    downloads = []

    def download(model_id, progress):
        downloads.append(model_id)
        for p in (0.0, 50.0, 100.0):
            progress(p)
        del foundry.routes[("GET", f"/models/load/{ALIAS}")]  # now in the cache: the fixture's loader answers
        foundry.routes[("GET", f"/models/load/{ALIAS}")] = foundry.loader

    _started_by_bench(foundry, monkeypatch, FakeSDK({ID: {"size_mb": 86}}, download))
    (tmp_path / "bench.yaml").write_text(f"endpoints:\n  - {{name: fl, runtime: foundry}}\nmodels: [{{name: {ALIAS}}}]\n")
    plan, writer = runner.prepare(resolve(tmp_path / "bench.yaml", env={}, rounds=1, warmup=0))
    info = runner.collect(plan, writer, env={}, sleep=lambda s: None).run.models[ALIAS]
    assert info.status == "skipped" and downloads == []
    assert "is not downloaded (90 MB per Foundry Local's catalog)" in info.reason
    assert "bench collect --download downloads it" in info.reason

    notes = []

    class Notes:
        def start(self, run, total): pass
        def model(self, key, info): pass
        def sample(self, sample): pass
        def note(self, text): notes.append(text)

    plan, writer = runner.prepare(resolve(tmp_path / "bench.yaml", env={}, rounds=1, warmup=0))
    info = runner.collect(plan, writer, env={}, sleep=lambda s: None, download=True, reporter=Notes()).run.models[ALIAS]
    assert downloads == [ID] and info.status == "ok" and info.extra["load_s"] >= 0
    assert info.extra["download"]["seconds"] >= 0 and info.extra["download"]["size_bytes"] == 86 * 1_048_576
    assert notes == [f"{ALIAS}: downloading {ID} (90 MB)", f"{ALIAS}: 0% downloaded", f"{ALIAS}: 50% downloaded",
                     f"{ALIAS}: 100% downloaded"]


def test_a_failed_download_fails_that_model_in_one_line_and_the_others_run(foundry, tmp_path, monkeypatch):
    from bench.errors import BenchError

    foundry.routes[("GET", f"/models/load/{ALIAS}")] = NOT_CACHED

    def download(model_id, progress):
        raise BenchError(f"Foundry Local could not download {model_id}: no network")

    _started_by_bench(foundry, monkeypatch, FakeSDK({ID: {}}, download))
    foundry.set_model("other", Script())
    (tmp_path / "bench.yaml").write_text(
        f"endpoints:\n  - {{name: fl, runtime: foundry}}\n  - {{name: o, base_url: '{foundry.url}', runtime: openai-compatible}}\n"
        f"models:\n  - {{name: {ALIAS}, endpoint: fl}}\n  - {{name: other, endpoint: o}}\n")
    plan, writer = runner.prepare(resolve(tmp_path / "bench.yaml", env={}, rounds=1, warmup=0))
    run = runner.collect(plan, writer, env={}, sleep=lambda s: None, download=True).run
    assert run.models[ALIAS].status == "failed" and "could not download" in run.models[ALIAS].reason
    assert "no network" in run.models[ALIAS].reason and run.models["other"].status == "ok"


def test_bench_models_shows_runtime_loadability_and_what_is_not_known(foundry):
    from bench.config import resolve
    from bench.measure.probe import checklist

    plan = resolve(None, env={}, endpoint=foundry.url, models=f"{ALIAS},phi-4-mini", require_endpoint=False)
    rows = checklist(plan, env={}, timeout_s=10)
    assert rows[0].ok and "runtime foundry (version not reported)" in rows[0].detail
    smol = next(r for r in rows if r.model == ALIAS)
    assert smol.ok and smol.detail.startswith("loaded in ") and f"as {ID}" in smol.detail
    assert "disk 0 MB" in smol.detail and "not known: license, runtime_version" in smol.detail
    assert "server memory now " in smol.detail  # the service's process tree (here: the test process)
    phi = next(r for r in rows if r.model == "phi-4-mini")
    assert not phi.ok and "does not serve 'phi-4-mini'" in phi.detail
    assert smol.checks["present"] == f"yes as {ID}" and smol.checks["loaded"].startswith("loaded now, in ")
    assert smol.checks["answers"].startswith("yes, in ") and "(the server's processes now)" in smol.checks["memory"]
    assert smol.checks["disk"] == "4 KB (the model's folder under Foundry Local's modelCachePath)"
    assert smol.checks["license"].startswith("unknown: not reported by Foundry Local's web service")
    assert phi.checks == {"present": "no"}
    again = next(r for r in checklist(plan, env={}, timeout_s=10) if r.model == ALIAS)
    assert again.checks["loaded"] == "yes"
    assert again.ok and again.detail.startswith("already loaded, answered in ")


def test_an_endpoint_without_url_finds_the_running_service(foundry, tmp_path, monkeypatch):
    from bench.runtimes import foundry as foundry_runtime

    found = foundry_runtime.find_service()  # the scripted service listens on loopback, like Foundry Local
    assert found == foundry.url
    (tmp_path / "bench.yaml").write_text(f"endpoints:\n  - {{name: fl, runtime: foundry}}\nmodels: [{{name: {ALIAS}}}]\n")
    from bench.config import resolve
    from bench.measure import runner

    plan, writer = runner.prepare(resolve(tmp_path / "bench.yaml", env={}, rounds=1, warmup=0))
    out = runner.collect(plan, writer, env={}, sleep=lambda s: None)
    info = out.run.models[ALIAS]
    assert info.status == "ok" and info.resolved_id == ID and info.extra["server"] == f"found running at {foundry.url}"
    assert out.run.config["endpoints"][0]["base_url"] is None  # what bench.yaml said; the run says where it went
    assert out.run.endpoints[0].base_url == foundry.url


def test_without_a_service_or_the_sdk_the_models_fail_with_how_to_fix_it(server, tmp_path, monkeypatch):
    import sys

    from bench.config import resolve
    from bench.measure import runner
    from bench.runtimes import foundry as foundry_runtime

    monkeypatch.setattr(foundry_runtime, "find_service", lambda: None)
    monkeypatch.setitem(sys.modules, "foundry_local_sdk", None)  # not installed
    server.set_model("m", Script())
    (tmp_path / "bench.yaml").write_text(
        f"endpoints:\n  - {{name: fl, runtime: foundry}}\n  - {{name: other, base_url: '{server.url}'}}\n"
        "models:\n  - {name: phi-4-mini, endpoint: fl}\n  - {name: m, endpoint: other}\n")
    plan, writer = runner.prepare(resolve(tmp_path / "bench.yaml", env={}, rounds=1, warmup=0))
    out = runner.collect(plan, writer, env={}, sleep=lambda s: None)
    assert out.run.models["phi-4-mini"].status == "failed"
    assert "no Foundry Local service is running" in out.run.models["phi-4-mini"].reason
    assert "pip install -e '.[foundry]'" in out.run.models["phi-4-mini"].reason
    assert out.run.models["m"].status == "ok"  # the other endpoint still runs


def test_only_a_runtime_that_finds_its_own_server_may_omit_the_url(tmp_path):
    from bench.config import resolve
    from bench.errors import ConfigError

    (tmp_path / "bench.yaml").write_text("endpoints:\n  - {name: e}\nmodels: [{name: m}]\n")
    with pytest.raises(ConfigError, match=r"endpoint 'e' needs a base_url like http://HOST:PORT/v1 .*: foundry\)"):
        resolve(tmp_path / "bench.yaml", env={})


def test_unknown_start_options_are_named(server, tmp_path):
    from bench.config import resolve
    from bench.measure import runner

    (tmp_path / "bench.yaml").write_text("endpoints:\n  - {name: fl, runtime: foundry, options: {catalog: x}}\n"
                                         "models: [{name: phi-4-mini}]\n")
    plan, writer = runner.prepare(resolve(tmp_path / "bench.yaml", env={}, rounds=1, warmup=0))
    out = runner.collect(plan, writer, env={}, sleep=lambda s: None)
    reason = out.run.models["phi-4-mini"].reason
    assert "unknown Foundry Local option(s) catalog; known: catalog_url, model_cache_dir" in reason


def test_a_service_bench_started_adds_what_the_sdk_catalog_knows(foundry, tmp_path, monkeypatch):
    _started_by_bench(foundry, monkeypatch, FakeSDK({ID: {"license": "apache-2.0", "ep": "CPUExecutionProvider",
                                                          "size_mb": 86, "alias": ALIAS}}))
    (tmp_path / "bench.yaml").write_text(f"endpoints:\n  - {{name: fl, runtime: foundry}}\nmodels: [{{name: {ALIAS}}}]\n")
    plan, writer = runner.prepare(resolve(tmp_path / "bench.yaml", env={}, rounds=1, warmup=0))
    run = runner.collect(plan, writer, env={}, sleep=lambda s: None).run
    info = run.models[ALIAS]
    assert info.status == "ok" and info.license == "apache-2.0" and info.resolved_id == ID
    assert info.extra["execution_provider"] == "CPUExecutionProvider" and info.extra["catalog_size_mb"] == 86
    assert "license" not in info.extra["unknown"] and "runtime_version" not in info.extra["unknown"]
    assert run.endpoints[0].runtime_version == "foundry-local-sdk 2.2.1"


def test_bench_models_says_a_listed_model_is_not_downloaded(foundry):
    from bench.measure.probe import checklist

    foundry.routes[("GET", f"/models/load/{ALIAS}")] = NOT_CACHED
    rows = checklist(resolve(None, env={}, endpoint=foundry.url, models=ALIAS, require_endpoint=False), env={},
                     timeout_s=10)
    smol = next(r for r in rows if r.model == ALIAS)
    assert not smol.ok and smol.detail.startswith(f"listed as {ID}, not loaded: {ALIAS} is not downloaded")


def test_the_sdk_download_error_loses_its_cpp_source_location():
    from bench.runtimes.foundry import _native_message

    # as foundry-local-sdk 2.2.1 raised it offline
    raw = ("region_fallback.cc:211 fl::FallbackResult fl::RegionFallback::Execute(const std::string&, const "
           "AttemptFn&) region fallback exhausted all 7 candidate region(s): centralus(transport failure)")
    assert _native_message(raw) == "region fallback exhausted all 7 candidate region(s): centralus(transport failure)"
    assert _native_message("Model not found (x)") == "Model not found (x)"


def test_on_python_before_3_11_the_hint_says_the_sdk_needs_a_newer_python():
    from bench.runtimes.foundry import sdk_hint

    assert "needs Python 3.11+, this is Python 3.10" in sdk_hint((3, 10))
    assert "needs Python" not in sdk_hint((3, 12)) and "--endpoint" in sdk_hint((3, 12))


def test_the_version_is_read_from_the_sdk_the_service_process_loaded(tmp_path):
    from bench.runtimes.foundry import sdk_version_from_paths

    site = tmp_path / "site-packages"
    lib = site / "foundry_local_sdk" / "_native" / "linux-x64" / "libfoundry_local.so"
    lib.parent.mkdir(parents=True)
    lib.write_bytes(b"")
    (site / "foundry_local_sdk-2.2.1.dist-info").mkdir()
    assert sdk_version_from_paths(["/usr/lib/libc.so.6", str(lib)]) == "foundry-local-sdk 2.2.1"
    assert sdk_version_from_paths(["/usr/lib/libc.so.6"]) is None
    (site / "foundry_local_sdk-2.2.1.dist-info").rename(site / "foundry_local_sdk-$(rm -rf x).dist-info")
    assert sdk_version_from_paths([str(lib)]) is None  # a planted folder name is not a version


def test_an_alias_is_never_taken_for_a_longer_models_prefix(foundry):
    # Found on the real service: 'phi-4' was resolved to phi-4-mini's variant because that id starts
    # with 'phi-4-'. The service itself does not know 'phi-4' (404 on load): bench must say so.
    mini = "phi-4-mini-instruct-generic-cpu:1"
    foundry.set_model(mini, Script())
    foundry.routes[("GET", "/models/load/phi-4")] = (404, {"error": {"message": "Model not found: No model matching 'phi-4'"}})
    out = collect(foundry, "phi-4", rounds=1, warmup=0)
    info = out.run.models["phi-4"]
    assert info.status == "skipped" and "does not serve 'phi-4'" in info.reason and info.resolved_id is None
    assert not [r for r in foundry.requests if r["path"].startswith("/v1/chat")]


def test_an_alias_that_is_not_the_ids_prefix_is_resolved_by_the_service_loading_it(foundry):
    # Foundry's catalog spells ids its own way: alias phi-4-mini serves Phi-4-mini-instruct-generic-cpu:5.
    pid = "Phi-4-mini-instruct-generic-cpu:5"
    foundry.set_model(pid, Script())

    def load(body):
        foundry.state["loads"].append("phi-4-mini")
        foundry.state["loaded"].append(pid)
        return 200, {"status": "loaded"}

    foundry.routes[("GET", "/models/load/phi-4-mini")] = load
    out = collect(foundry, "phi-4-mini", rounds=1, warmup=0)
    info = out.run.models["phi-4-mini"]
    assert info.status == "ok" and info.resolved_id == pid and info.extra["load_s"] >= 0
    assert foundry.state["loads"] == ["phi-4-mini"]  # loaded once, by alias: that load is the one timed
    chats = [r for r in foundry.requests if r["path"].startswith("/v1/chat")]
    assert chats and all(r["body"]["model"] == pid for r in chats)


def test_an_alias_whose_model_is_not_downloaded_is_skipped_when_only_loading_can_resolve_it(foundry):
    foundry.set_model("Phi-4-mini-instruct-generic-cpu:5", Script())
    foundry.routes[("GET", "/models/load/phi-4-mini")] = NOT_CACHED
    info = collect(foundry, "phi-4-mini", rounds=1, warmup=0).run.models["phi-4-mini"]
    assert info.status == "skipped" and "phi-4-mini is not downloaded" in info.reason


def test_with_the_sdk_the_catalog_resolves_the_alias(foundry, tmp_path, monkeypatch):
    pid = "Phi-4-mini-instruct-generic-cpu:5"
    foundry.set_model(pid, Script())
    foundry.routes[("GET", f"/models/load/{pid}")] = lambda body: (
        foundry.state["loaded"].append(pid) or (200, {"status": "loaded"}))
    _started_by_bench(foundry, monkeypatch, FakeSDK({pid: {"alias": "phi-4-mini", "license": "MIT"}}))
    (tmp_path / "bench.yaml").write_text("endpoints:\n  - {name: fl, runtime: foundry}\nmodels: [{name: phi-4-mini}]\n")
    plan, writer = runner.prepare(resolve(tmp_path / "bench.yaml", env={}, rounds=1, warmup=0))
    info = runner.collect(plan, writer, env={}, sleep=lambda s: None).run.models["phi-4-mini"]
    assert info.status == "ok" and info.resolved_id == pid and info.license == "MIT"
