"""bench against Foundry Local's real web service (foundry-local-sdk 2.x), started without preloading.

Needs what CI does not install, so it is skipped unless both are given:
  BENCH_FOUNDRY_PYTHON     a Python (3.11+) with foundry-local-sdk installed
  BENCH_FOUNDRY_MODEL_DIR  an ONNX GenAI model folder (genai_config.json ...), e.g. SmolLM2-135M
                           converted as site_src/runtimes.md describes
The service reads its catalog from tests/foundry/catalog_standin.py (offline) and finds the model in
its cache, as it finds a downloaded one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.results import store

HERE = Path(__file__).resolve().parent
PY = os.environ.get("BENCH_FOUNDRY_PYTHON")
MODEL_DIR = os.environ.get("BENCH_FOUNDRY_MODEL_DIR")
ALIAS, ID = "smollm2-135m-instruct", "smollm2-135m-instruct-generic-cpu:1"
BIG = "phi-4-mini"  # in the catalog (3 GB), not in the cache

pytestmark = [pytest.mark.foundry, pytest.mark.skipif(not (PY and MODEL_DIR),
                                                      reason="set BENCH_FOUNDRY_PYTHON and BENCH_FOUNDRY_MODEL_DIR")]


def _start(cmd: list[str], tmp_path: Path) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=open(tmp_path / "service.log", "a"), text=True)
    line = proc.stdout.readline().split()
    if not line or line[0] != "READY":
        proc.kill()
        pytest.fail(f"{cmd[1]} did not start: {(tmp_path / 'service.log').read_text()[-2000:]}")
    return proc, line[1]


def _cached_model(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(cache, model folder, catalog file): the model in a Foundry Local cache, and a catalog listing it."""
    sys.path.insert(0, str(HERE / "foundry"))
    from catalog_standin import entry

    cache = tmp_path / "cache"
    folder = cache / "HuggingFaceTB" / "smollm2-135m-instruct-generic-cpu-1"
    shutil.copytree(MODEL_DIR, folder)
    (folder / "inference_model.json").write_text(json.dumps({"Name": ID}))
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps({"totalCount": 2, "value": [
        entry(ALIAS, ID, "HuggingFaceTB", 90_000_000),
        entry(BIG, "phi-4-mini-instruct-generic-cpu:1", "Microsoft", 3_000_000_000, "MIT")]}))
    return cache, folder, catalog


@pytest.fixture
def service(tmp_path):
    cache, folder, catalog = _cached_model(tmp_path)
    procs = []
    try:
        standin, catalog_url = _start([sys.executable, str(HERE / "foundry" / "catalog_standin.py"), str(catalog)],
                                      tmp_path)
        procs.append(standin)
        svc, url = _start([PY, str(HERE / "foundry" / "service.py"), f"{catalog_url}/asset-gallery/v1.0/models",
                           str(cache), str(tmp_path)], tmp_path)
        procs.append(svc)
        yield url, folder
    finally:
        for p in procs:
            p.kill()
            p.wait()


def test_an_alias_is_measured_on_the_real_service_started_without_preloading(service, tmp_path):
    url, folder = service
    r = subprocess.run([sys.executable, "-m", "bench", "collect", "--endpoint", f"{url}/v1", "--models",
                        f"{ALIAS},{BIG}", "--rounds", "1", "--results-dir", str(tmp_path / "results")],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-3000:]
    # the one not in the cache: skipped, never downloaded (this service was not started by bench)
    assert f"{BIG} is not downloaded (size not reported by Foundry Local's web service)" in r.stderr
    assert f"foundry model download {BIG}" in r.stderr and "1 of 2 models were not measured" in r.stderr
    [path] = (tmp_path / "results").glob("*.json")
    run = store.load_run(path)
    assert run.endpoints[0].runtime == "foundry"
    # the web service reports no version: it is read from the SDK library its process loaded
    assert run.endpoints[0].runtime_version and run.endpoints[0].runtime_version.startswith("foundry-local-sdk 2.")
    info = run.models[ALIAS]
    assert info.status == "ok" and info.runtime == "foundry" and info.resolved_id == ID
    assert info.extra["load_s"] > 0 and info.extra["variant"] == ID and info.extra["publisher"] == "HuggingFaceTB"
    assert info.extra["disk_bytes"] == sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    assert info.extra["peak_rss_bytes"] > 0 and "license" in info.extra["unknown"]
    assert "runtime_version" not in info.extra["unknown"]
    assert sum(1 for s in run.samples if s.ok and not s.warmup) == len(run.workload.prompts)


def test_without_a_url_bench_starts_the_service_through_the_sdk(tmp_path):
    pytest.importorskip("foundry_local_sdk", reason="pip install -e '.[foundry]' (Python 3.11+)")
    cache, _, catalog = _cached_model(tmp_path)
    standin, catalog_url = _start([sys.executable, str(HERE / "foundry" / "catalog_standin.py"), str(catalog)], tmp_path)
    try:
        (tmp_path / "bench.yaml").write_text(
            "endpoints:\n  - name: fl\n    runtime: foundry\n    options:\n"
            f"      catalog_url: {catalog_url}/asset-gallery/v1.0/models\n      model_cache_dir: {cache}\n"
            f"models: [{{name: {ALIAS}}}, {{name: {BIG}}}]\n")
        runs = [subprocess.run([sys.executable, "-m", "bench", "collect", "--rounds", "1", "--results-dir",
                                str(tmp_path / f"results{i}"), *flags], capture_output=True, text=True, timeout=600,
                               cwd=tmp_path) for i, flags in enumerate([[], ["--download"]])]
    finally:
        standin.kill()
        standin.wait()
    r, r2 = runs
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-3000:]
    # not in the cache: its size from the SDK's catalog (3,000,000,000 bytes, given in MiB), never downloaded
    assert f"{BIG} is not downloaded (3.0 GB per Foundry Local's catalog)" in r.stderr
    assert "bench collect --download downloads it" in r.stderr
    # with the flag bench asks the SDK to download it; offline that fails, in one line, and smollm2 still runs
    assert r2.returncode == 1 and "Traceback" not in r2.stderr, r2.stderr[-3000:]
    assert f"{BIG}: downloading phi-4-mini-instruct-generic-cpu:1 (3.0 GB)" in r2.stderr
    run2 = store.load_run(next((tmp_path / "results1").glob("*.json")))
    assert "could not download phi-4-mini-instruct-generic-cpu:1" in run2.models[BIG].reason
    assert run2.models[ALIAS].status == "ok"
    [path] = (tmp_path / "results0").glob("*.json")
    info = store.load_run(path).models[ALIAS]
    assert store.load_run(path).endpoints[0].runtime_version.startswith("foundry-local-sdk 2.")
    assert info.status == "ok" and info.resolved_id == ID and info.extra["load_s"] > 0
    assert info.extra["server"].startswith("started by bench through foundry-local-sdk at http://127.0.0.1:")
    # bench started it, so the SDK's catalog tells what the web service does not
    assert info.extra["execution_provider"] == "CPUExecutionProvider" and info.extra["catalog_size_mb"] == 85
    assert info.extra["device"] == "CPU" and info.license == "apache-2.0" and "license" not in info.extra["unknown"]
    assert info.extra["license_description"] == "apache-2.0 (stand-in catalog)"
